"""A port's ``extra_dhcp_opts`` in the DHCP responder's answer bytes, and the encoding
of option names and values (``plexus.model.dhcp_options``)."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from plexus.model import keys
from plexus.model.dhcp_options import BadOption, code_of, encode
from plexus.model.objects import to_port
from tests.unit.test_dhcp import (
    ACK, DISCOVER, OFFER, PORT, REQUEST, answer, assert_configuration, client_frame, ip,
    make_view,
)

WIRE = {"id": "p1", "network_id": "n1", "mac_address": "fa:16:3e:aa:bb:cc",
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        "binding:host_id": "hv1"}


def port_with(opts):
    wire = dict(WIRE, **{keys.KEY: 1}, extra_dhcp_opts=opts)
    return to_port(wire)


def test_names_numbers_and_prefix_name_the_same_option():
    assert code_of("domain-name") == code_of("15") == code_of("option:domain-name") == 15
    assert code_of("ntp-server") == 42 and code_of("mtu") == 26
    for bad in ("no-such-option", "0", "255", "53", "54", "51", "300", ""):
        with pytest.raises(BadOption):
            code_of(bad)


def test_values_are_encoded_by_the_options_type():
    assert encode("domain-name", "example.org") == (15, b"example.org")
    assert encode("ntp-server", "10.0.0.7, 10.0.0.8") == (42, ip("10.0.0.7") + ip("10.0.0.8"))
    assert encode("mtu", "1400") == (26, struct.pack("!H", 1400))
    assert encode("default-ttl", "32") == (23, b"\x20")
    assert encode("ip-forward-enable", "false") == (19, b"\x00")
    assert encode("150", "10.0.0.9") == (150, ip("10.0.0.9"))       # known number
    assert encode("224", "10.1.2.3,10.1.2.4") == (224, ip("10.1.2.3") + ip("10.1.2.4"))
    assert encode("225", "some text") == (225, b"some text")          # unknown: text
    for name, value in (("mtu", "big"), ("mtu", "70000"), ("ntp-server", "ntp.example"),
                        ("netmask", "1.2.3.4,5.6.7.8"), ("ip-forward-enable", "maybe")):
        with pytest.raises(BadOption):
            encode(name, value)


def test_port_keeps_only_usable_ipv4_options():
    port = port_with([{"opt_name": "domain-name", "opt_value": "a.example", "ip_version": 4},
                      {"opt_name": "dns-server", "opt_value": "fd00::1", "ip_version": 6},
                      {"opt_name": "mtu", "opt_value": "nonsense", "ip_version": 4},
                      {"opt_name": "42", "opt_value": "10.0.0.7"}])
    assert port.dhcp_options == ((15, b"a.example"), (42, ip("10.0.0.7")))
    assert port_with(None).dhcp_options == ()
    # a change of the options is a change of the port
    assert port != port_with([])


@pytest.mark.parametrize("kind,reply", [(DISCOVER, OFFER), (REQUEST, ACK)])
def test_answer_carries_the_ports_extra_options(kind, reply):
    port = replace(PORT, dhcp_options=((15, b"corp.example"), (26, struct.pack("!H", 1300)),
                                       (42, ip("10.0.0.7") + ip("10.0.0.8"))))
    options = [(55, bytes([1, 3, 15, 26, 42]))]
    if kind == REQUEST:
        options += [(50, ip("10.0.0.5")), (54, ip("10.0.0.1"))]
    view = make_view(ports=(port,))
    _, _, _, d, opts = answer(client_frame(kind, options=options), view=view, port=port)
    assert opts[53] == bytes([reply]) and d.yiaddr == "10.0.0.5"
    assert opts[15] == b"corp.example"
    assert opts[42] == ip("10.0.0.7") + ip("10.0.0.8")
    assert opts[26] == struct.pack("!H", 1300)          # replaces the network's 1450
    # once each, and every other option as without extra options
    tags = [o.tag for o in d.options.option_list]
    assert tags.count(26) == 1 and tags.count(15) == 1
    assert_configuration({**opts, 26: struct.pack("!H", 1450), 15: b"openstacklocal"})


def test_without_extra_options_the_answer_is_unchanged():
    _, _, _, _, opts = answer(client_frame(DISCOVER))
    assert 42 not in opts
    assert opts[15] == b"openstacklocal"        # the cloud's domain, no extra option
