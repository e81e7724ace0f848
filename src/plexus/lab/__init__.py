"""The lab: simulated hypervisors (namespaces with their own OVS), VMs, an underlay and
an external network on one machine, all torn down by inventory. See ``lab.Lab``."""

from plexus.lab.lab import Lab, LabError, lab_root
from plexus.lab.topology import LabSpec, TopologyError

__all__ = ["Lab", "LabError", "LabSpec", "TopologyError", "lab_root"]
