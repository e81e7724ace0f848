"""The agent's SNAT demand arithmetic (``plexus.agent.l3``): what a conntrack dump says
a router zone uses of this chassis' blocks, when to lease more, which idle blocks to
give back."""

from __future__ import annotations

from plexus.agent import l3

GW = "203.0.113.150"
BLOCKS = [(33280, 33343), (33344, 33407)]


def line(proto: str, sport: int, nat_port: int, zone: int = 65364, dst: str = GW,
         server: str = "198.19.0.10", dport: int = 5400) -> str:
    return (f"{proto},orig=(src=10.71.1.5,dst={server},sport={sport},dport={dport}),"
            f"reply=(src={server},dst={dst},sport={dport},dport={nat_port}),zone={zone},"
            f"protoinfo=(state=ESTABLISHED)")


def test_use_counts_connections_per_destination_in_own_blocks_only():
    dump = "\n".join([
        line("tcp", 40000, 33280), line("tcp", 40002, 33281),
        line("tcp", 40004, 33282, server="198.19.0.11"),       # another destination
        line("udp", 40000, 33290),                              # another protocol
        line("tcp", 40006, 33400),                              # second block
        line("tcp", 40008, 40008, dst="10.71.1.5"),             # not NATed here
        line("tcp", 40010, 33500),                              # not an own block
        line("tcp", 40012, 33283, zone=7),                      # another zone
        "icmp,orig=(src=10.71.1.5,dst=198.19.0.10,id=1,type=8,code=0),reply=(src=198.19."
        "0.10,dst=203.0.113.150,id=1,type=0,code=0),zone=65364",
    ])
    use = l3.snat_use(dump, {65364: (GW, BLOCKS)})[65364]
    assert use.peak == 3                                   # tcp to 198.19.0.10:5400
    assert use.busy == {33280, 33344}


def test_more_blocks_when_busy_or_dropping_never_past_the_maximum():
    assert l3.snat_wanted_count(1, 64, l3.SnatUse(10), 0, 8) == 1       # room left
    assert l3.snat_wanted_count(1, 64, l3.SnatUse(32), 0, 8) == 2       # half used
    assert l3.snat_wanted_count(1, 64, l3.SnatUse(64), 136, 16) == 7    # 200 / 0.5
    assert l3.snat_wanted_count(4, 64, l3.SnatUse(0), 1, 8) == 5        # any drop: more
    assert l3.snat_wanted_count(4, 64, l3.SnatUse(0), 100, 8) == 8      # twice the drops
    assert l3.snat_wanted_count(2, 64, l3.SnatUse(100), 1, 8) == 4      # busy, dropping
    assert l3.snat_wanted_count(6, 64, l3.SnatUse(384), 60, 6) == 6     # at the maximum
    assert l3.snat_wanted_count(0, 64, l3.SnatUse(), 0, 6) == 1


def test_idle_blocks_go_back_one_always_stays():
    assert l3.snat_idle([1, 2, 3], 64, l3.SnatUse(0, frozenset())) == [3, 2]
    assert l3.snat_idle([1, 2, 3], 64, l3.SnatUse(1, frozenset({3}))) == [2, 1]
    assert l3.snat_idle([1, 2, 3], 64, l3.SnatUse(40, frozenset({1}))) == []   # would fill


def test_router_zone_timeouts_close_fast_and_bound_the_quarantine():
    t = l3.ROUTER_ZONE_TIMEOUTS
    assert t["tcp_time_wait"] <= 5 and t["tcp_close"] <= 5
    assert l3.LONGEST_ROUTER_CT_TIMEOUT == t["tcp_established"] == 7200
