"""Neutron's query conventions through openstacksdk and raw HTTP: filters, fields,
sorting, pagination with links, tags and tag filters."""

from __future__ import annotations

import pytest

from tests.api.helpers import raw


@pytest.fixture
def nets(demo):
    """Five networks of project demo with names q0..q4 and a mix of flags and tags."""
    made = [demo.network.create_network(name=f"q{i}", admin_state_up=(i % 2 == 0),
                                        description=f"d{i % 2}") for i in range(5)]
    yield made
    for n in made:
        demo.network.delete_network(n)


def ids(resp, key="networks"):
    return [n["id"] for n in resp.json()[key]]


def test_filters_repeatable_and_booleans(demo, server, nets):
    r = raw(server, demo, "GET", "/v2.0/networks?name=q1&name=q3")
    assert sorted(n["name"] for n in r.json()["networks"]) == ["q1", "q3"]
    r = raw(server, demo, "GET", "/v2.0/networks?admin_state_up=False&description=d1")
    assert sorted(n["name"] for n in r.json()["networks"]) == ["q1", "q3"]
    assert {n.name for n in demo.network.networks(is_admin_state_up=True, name="q2")} == {"q2"}


def test_unknown_filter_is_400(demo, server, nets):
    r = raw(server, demo, "GET", "/v2.0/networks?colour=blue")
    assert r.status_code == 400
    assert r.json()["NeutronError"]["message"] == "[colour] is invalid attribute for filtering"


def test_fields(demo, server, nets):
    r = raw(server, demo, "GET", "/v2.0/networks?name=q0&fields=id&fields=name")
    assert r.json()["networks"] == [{"id": nets[0].id, "name": "q0"}]
    r = raw(server, demo, "GET", f"/v2.0/networks/{nets[0].id}?fields=status")
    assert r.json() == {"network": {"status": "ACTIVE"}}


def test_sorting(demo, server, nets):
    r = raw(server, demo, "GET", "/v2.0/networks?name=q0&name=q1&name=q2&name=q3&name=q4"
                                 "&sort_key=name&sort_dir=desc")
    assert [n["name"] for n in r.json()["networks"]] == ["q4", "q3", "q2", "q1", "q0"]
    r = raw(server, demo, "GET", "/v2.0/networks?sort_key=name&sort_dir=sideways")
    assert r.status_code == 400


def test_pagination_links_walk_everything(demo, server, nets):
    names = "&".join(f"name=q{i}" for i in range(5))
    seen = []
    url = f"/v2.0/networks?{names}&sort_key=name&sort_dir=asc&limit=2"
    pages = 0
    while url:
        r = raw(server, demo, "GET", url)
        assert r.status_code == 200
        body = r.json()
        seen += [n["name"] for n in body["networks"]]
        nxt = [link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"]
        url = nxt[0].removeprefix(server.url) if nxt else None
        pages += 1
    assert seen == ["q0", "q1", "q2", "q3", "q4"] and pages == 3
    # the sdk follows the links itself
    listed = [n.name for n in demo.network.networks(name=[f"q{i}" for i in range(5)],
                                                    limit=2, sort_key="name")]
    assert sorted(listed) == ["q0", "q1", "q2", "q3", "q4"]


def test_previous_link_with_page_reverse(demo, server, nets):
    names = "&".join(f"name=q{i}" for i in range(5))
    marker = next(n.id for n in nets if n.name == "q3")
    r = raw(server, demo, "GET", f"/v2.0/networks?{names}&sort_key=name&limit=2"
                                 f"&marker={marker}&page_reverse=True")
    assert [n["name"] for n in r.json()["networks"]] == ["q1", "q2"]


def test_tags_and_tag_filters(demo, server, nets):
    a, b, c = nets[:3]
    demo.network.set_tags(a, ["red", "blue"])
    demo.network.add_tag(b, "red")
    demo.network.add_tag(c, "green")
    assert sorted(demo.network.get_network(a.id).tags) == ["blue", "red"]
    r = raw(server, demo, "GET", "/v2.0/networks?tags=red")
    assert sorted(ids(r)) == sorted([a.id, b.id])
    r = raw(server, demo, "GET", "/v2.0/networks?tags=red,blue")
    assert ids(r) == [a.id]
    r = raw(server, demo, "GET", "/v2.0/networks?tags-any=blue,green")
    assert sorted(ids(r)) == sorted([a.id, c.id])
    r = raw(server, demo, "GET", "/v2.0/networks?not-tags=red&name=q0&name=q1&name=q2")
    assert ids(r) == [c.id]
    assert raw(server, demo, "GET", f"/v2.0/networks/{a.id}/tags/red").status_code == 204
    assert raw(server, demo, "GET", f"/v2.0/networks/{a.id}/tags/pink").status_code == 404
    assert raw(server, demo, "DELETE", f"/v2.0/networks/{a.id}/tags/red").status_code == 204
    assert demo.network.get_network(a.id).tags == ["blue"]
    assert raw(server, demo, "DELETE", f"/v2.0/networks/{a.id}/tags").status_code == 204
    assert demo.network.get_network(a.id).tags == []


def test_tags_on_create_and_cli(demo, cli):
    net = demo.network.create_network(name="tagged", tags=["x", "y"])
    try:
        assert sorted(net.tags) == ["x", "y"]
        cli("network", "set", "--tag", "z", "tagged", cloud="devstack", fmt=False)
        shown = cli("network", "show", "tagged", cloud="devstack")
        assert sorted(shown["tags"]) == ["x", "y", "z"]
        listed = cli("network", "list", "--tags", "z", cloud="devstack")
        assert [n["ID"] for n in listed] == [net.id]
    finally:
        demo.network.delete_network(net)


def test_version_discovery_and_extensions(demo, server):
    root = raw(server, demo, "GET", "/").json()
    assert root["versions"][0]["id"] == "v2.0"
    exts = raw(server, demo, "GET", "/v2.0/extensions").json()["extensions"]
    aliases = {e["alias"] for e in exts}
    assert {"external-net", "provider", "filter-validation", "standard-attr-tag"} <= aliases
    one = raw(server, demo, "GET", "/v2.0/extensions/provider").json()["extension"]
    assert one == next(e for e in exts if e["alias"] == "provider")
    assert raw(server, demo, "GET", "/v2.0/extensions/nope").status_code == 404
    assert demo.network.find_extension("provider") is not None


def test_openapi_document(server):
    import httpx
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2.0/ports/{id}" in doc["paths"]
    assert "fixed_ips" in doc["components"]["schemas"]["PortCreate"]["properties"]
