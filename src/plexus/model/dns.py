"""Neutron's DNS integration (``dns-integration``, ``dns-domain-ports``) as pure
functions shared by the server and the agents: the validation of DNS names and domains
(neutron-lib's ``validators.dns``, same reasons), the server's ``dns_domain`` setting,
a port's ``dns_assignment`` and the names the host DHCP hands a port.

Semantics (Neutron's, without an external DNS service driver — Plexus has none):

- The cloud's domain is the server's ``network.dns_domain`` (Neutron's ``[DEFAULT]
  dns_domain``, default ``openstacklocal.``), always written with its trailing dot.
- While it is the default (or empty), a port's ``dns_name`` and ``dns_domain`` are not
  kept (Neutron's ``_get_request_dns_name``): the port is named after its address.
- A port's ``dns_assignment`` has one entry per fixed IP: ``hostname`` its ``dns_name``
  (or ``host-<address with dashes>`` when it has none), ``fqdn`` the hostname qualified
  with the cloud's domain (a ``dns_name`` that is already an FQDN, ending in a dot, is
  its own). The port's and its network's ``dns_domain`` only matter to an external DNS
  service, which Plexus does not have: they are stored and shown, not used.
- DHCP (IPv4 option 12 and 15, the DHCPv6 domain search list) says the hostname of the
  leased address without the domain, and the cloud's domain, as Neutron's dnsmasq
  (``--domain``) and OVN's DHCP do."""

from __future__ import annotations

import re
from typing import Iterable

DEFAULT_DOMAIN = "openstacklocal."
FQDN_MAX = 255                    # neutron-lib's FQDN_FIELD_SIZE
_LABEL = re.compile(r"^[a-z0-9-]{1,63}$")
_NUMERIC = re.compile(r"^[0-9]+$")


class BadName(ValueError):
    """A DNS name or domain that does not validate; the message is Neutron's reason."""


def lower(value) -> str:
    """Neutron's ``convert_string_to_case_insensitive``."""
    if not isinstance(value, str):
        raise BadName(f"Input value {value} must be string type")
    return value.lower()


def _format(data: str, max_len: int = FQDN_MAX) -> None:
    """neutron-lib's ``_validate_dns_format``: RFC 1123 labels, an optional final dot."""
    if not data:
        return
    trimmed = data[:-1] if data.endswith(".") else data
    try:
        if len(trimmed) > max_len:
            raise BadName(f"'{trimmed}' exceeds the {max_len} character FQDN limit")
        labels = trimmed.split(".")
        for label in labels:
            if not label:
                raise BadName("Encountered an empty component")
            if label.startswith("-") or label.endswith("-"):
                raise BadName(f"Name '{label}' must not start or end with a hyphen")
            if not _LABEL.match(label):
                raise BadName(f"Name '{label}' must be 1-63 characters long, each of which "
                              f"can only be alphanumeric or a hyphen")
        if len(labels) > 1 and _NUMERIC.match(labels[-1]):
            raise BadName(f"TLD '{labels[-1]}' must not be all numeric")
    except BadName as exc:
        raise BadName(f"'{data}' not a valid PQDN or FQDN. Reason: {exc}") from None


def domain_setting(value: str | None) -> str:
    """The server's ``dns_domain`` as Neutron reads it: '' or ending with a dot."""
    if not value:
        return ""
    return value if value.endswith(".") else value + "."


def names_kept(domain: str) -> bool:
    """Whether ports keep their ``dns_name`` (and ``dns_domain``): only when the cloud's
    domain is set and is not Neutron's default ``openstacklocal.``."""
    domain = domain_setting(domain)
    return bool(domain) and domain != DEFAULT_DOMAIN


def check_dns_name(value, domain: str) -> str:
    """A port's ``dns_name`` (lower-cased), checked as Neutron's ``dns_host_name``
    validator does against the cloud's ``domain``: a PQDN must fit with the domain in an
    FQDN; an FQDN must end with the domain and name something inside it."""
    value = lower(value)
    _format(value)
    domain = domain_setting(domain)
    if not value or not names_kept(domain):
        return value
    higher = f".{domain}"
    if not value.endswith("."):
        if len(value) + len(higher) > FQDN_MAX:
            raise BadName(
                f"The dns_name passed is a PQDN and its size is '{len(value)}'. The "
                f"dns_domain option in neutron.conf is set to {domain}, with a length of "
                f"'{len(higher)}'. When the two are concatenated to form a FQDN (with a '.' "
                f"at the end), the resulting length exceeds the maximum size of "
                f"'{FQDN_MAX}'")
        return value
    if len(value) <= len(higher) or not value.endswith(higher):
        raise BadName(
            f"The dns_name passed is a FQDN. Its higher level labels must be equal to the "
            f"dns_domain option in neutron.conf, that has been set to '{domain}'. It must "
            f"also include one or more valid DNS labels to the left of '{domain}'")
    return value


def check_dns_name_format(value) -> str:
    """The format part of ``check_dns_name`` (no domain: what the schema can check)."""
    value = lower(value)
    _format(value)
    return value


def check_dns_domain(value) -> str:
    """A network's, port's or floating IP's ``dns_domain`` (neutron-lib's
    ``validate_dns_domain``): '' or an FQDN (final dot) room for a sub-domain."""
    value = lower(value)
    if not value:
        return value
    if not value.endswith("."):
        raise BadName(f"'{value}' is not a FQDN")
    _format(value)
    if len(value) > FQDN_MAX - 2:
        raise BadName(f"'{value}' contains {len(value)} characters. Adding a sub-domain will "
                      f"cause it to exceed the maximum length of a FQDN of '{FQDN_MAX}'")
    return value


def check_fip_dns_name(value) -> str:
    """A floating IP's ``dns_name`` (``validate_fip_dns_name``): a relative name with room
    for a domain."""
    value = lower(value)
    if not value:
        return value
    if value.endswith("."):
        raise BadName(f"'{value}' is a FQDN. It should be a relative domain name")
    _format(value)
    if len(value) > FQDN_MAX - 3:
        raise BadName(f"'{value}' contains {len(value)} characters. Adding a domain name "
                      f"will cause it to exceed the maximum length of a FQDN of "
                      f"'{FQDN_MAX}'")
    return value


def host_name(address: str) -> str:
    """The name of an address without a ``dns_name``: ``host-10-0-0-3``."""
    return "host-" + address.replace(".", "-").replace(":", "-")


def name_of(dns_name: str, address: str, domain: str) -> tuple[str, str]:
    """(hostname, fqdn) of one of a port's addresses (Neutron's
    ``_get_dns_names_for_port``): the ``dns_name`` only while names are kept."""
    domain = domain_setting(domain)
    name = dns_name if dns_name and names_kept(domain) else ""
    if name:
        return name, name if name.endswith(".") else f"{name}.{domain}"
    host = host_name(address)
    return host, f"{host}.{domain}" if domain else host


def assignment(dns_name: str, addresses: Iterable[str], domain: str) -> list[dict]:
    """A port's ``dns_assignment``: {hostname, ip_address, fqdn} per fixed IP, in order."""
    out = []
    for address in addresses:
        host, fqdn = name_of(dns_name, address, domain)
        out.append({"hostname": host, "ip_address": address, "fqdn": fqdn})
    return out


def dhcp_names(dns_name: str, address: str, domain: str) -> tuple[str, str]:
    """What DHCP tells the client leasing ``address``: (host name, domain name), both
    without a final dot; the host name is the FQDN less the cloud's domain (dnsmasq's
    ``dhcp-host`` with Neutron's FQDN and ``--domain``), the domain '' when there is
    none."""
    domain = domain_setting(domain)
    _, fqdn = name_of(dns_name, address, domain)
    fqdn = fqdn.rstrip(".")
    bare = domain.rstrip(".")
    host = fqdn[:-len(bare) - 1] if bare and fqdn.endswith("." + bare) else fqdn
    return host, bare
