"""Neutron's ``extra_dhcp_opts`` for DHCPv4: option names (dnsmasq's, as Neutron's DHCP
agent passes them on; or the option number) and how each value is encoded. Pure; shared
by the API (a value that cannot be encoded is a 400) and the agent's DHCP responder.

An option is named by dnsmasq's name (``domain-name``, ``ntp-server``, ``mtu``...), by
its number (``"15"``), or either with dnsmasq's ``option:`` prefix. Values are text as
in Neutron: addresses comma-separated, numbers in decimal, anything else as a string.
An unknown number is sent as addresses when every part is an IPv4 address, else as text.
"""

from __future__ import annotations

import ipaddress
import struct

IPS, IP, U8, U16, U32, TEXT, BOOL = "ips", "ip", "u8", "u16", "u32", "text", "bool"

# name -> (code, encoding)
OPTIONS: dict[str, tuple[int, str]] = {
    "netmask": (1, IP), "router": (3, IPS), "dns-server": (6, IPS), "log-server": (7, IPS),
    "lpr-server": (9, IPS), "hostname": (12, TEXT), "domain-name": (15, TEXT),
    "swap-server": (16, IP), "root-path": (17, TEXT), "extension-path": (18, TEXT),
    "ip-forward-enable": (19, BOOL), "non-local-source-routing": (20, BOOL),
    "max-datagram-reassembly": (22, U16), "default-ttl": (23, U8), "mtu": (26, U16),
    "all-subnets-local": (27, BOOL), "broadcast": (28, IP), "router-discovery": (31, BOOL),
    "router-solicitation": (32, IP), "trailer-encapsulation": (34, BOOL),
    "arp-timeout": (35, U32), "ethernet-encap": (36, BOOL), "tcp-ttl": (37, U8),
    "tcp-keepalive": (38, U32), "nis-domain": (40, TEXT), "nis-server": (41, IPS),
    "ntp-server": (42, IPS), "netbios-ns": (44, IPS), "netbios-dd": (45, IPS),
    "netbios-nodetype": (46, U8), "netbios-scope": (47, TEXT), "x-windows-fs": (48, IPS),
    "x-windows-dm": (49, IPS), "message": (56, TEXT), "nis+-domain": (64, TEXT), "nis+-server": (65, IPS),
    "tftp-server": (66, TEXT), "bootfile-name": (67, TEXT), "mobile-ip-home": (68, IPS),
    "smtp-server": (69, IPS), "pop3-server": (70, IPS), "nntp-server": (71, IPS),
    "irc-server": (74, IPS), "tftp-server-address": (150, IPS),
}
BY_CODE = {code: kind for code, kind in OPTIONS.values()}
# set by the protocol and the lease itself, never by a port: pad, requested address,
# lease time, overload, message type, server id, parameter list, maximum size, T1, T2,
# client id, end
RESERVED = {0, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 255}


class BadOption(ValueError):
    """An option name or value DHCPv4 cannot carry."""


def code_of(name: str) -> int:
    """The option number of a name (dnsmasq's, a number, either with ``option:``)."""
    bare = name.removeprefix("option:")
    if bare in OPTIONS:
        code = OPTIONS[bare][0]
    elif bare.isdigit():
        code = int(bare)
    else:
        raise BadOption(f"DHCP option {name} is not supported")
    if not 0 < code < 255 or code in RESERVED:
        raise BadOption(f"DHCP option {name} is not supported")
    return code


def _ips(value: str) -> bytes:
    try:
        return b"".join(ipaddress.IPv4Address(v.strip()).packed for v in value.split(","))
    except ValueError:
        raise BadOption(f"'{value}' is not a list of IPv4 addresses") from None


def encode(name: str, value: str) -> tuple[int, bytes]:
    """(option number, bytes on the wire) of one option; BadOption if it cannot be sent."""
    code = code_of(name)
    kind = BY_CODE.get(code)
    if kind is None:                      # unknown number: addresses if they all are
        try:
            return code, _ips(value)
        except BadOption:
            kind = TEXT
    if kind in (IPS, IP):
        data = _ips(value)
        if kind == IP and len(data) != 4:
            raise BadOption(f"'{value}' is not one IPv4 address")
    elif kind == TEXT:
        data = value.encode()
    elif kind == BOOL:
        if value.lower() not in ("0", "1", "true", "false"):
            raise BadOption(f"'{value}' is not a boolean")
        data = bytes([value.lower() in ("1", "true")])
    else:
        fmt, hi = {U8: ("!B", 0xFF), U16: ("!H", 0xFFFF), U32: ("!I", 0xFFFFFFFF)}[kind]
        try:
            number = int(value)
        except ValueError:
            raise BadOption(f"'{value}' is not an integer") from None
        if not 0 <= number <= hi:
            raise BadOption(f"{value} is out of range for DHCP option {name}")
        data = struct.pack(fmt, number)
    if not data or len(data) > 255 * 4:
        raise BadOption(f"'{value}' is not a valid value for DHCP option {name}")
    return code, data
