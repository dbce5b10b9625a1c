"""The TLS files of a server whose replicas reach it over TCP (MariaDB, Redis): shared by those engines."""

from __future__ import annotations

from reddwarf.domain.certificates import self_signed
from reddwarf.domain.replication import Topology
from reddwarf.domain.workload import FileSpec, Placement


def member_files(placement: Placement, topology: Topology | None, ca: str, cert: str, key: str) -> tuple[FileSpec, ...]:
    """The CA certificate the server trusts, its certificate and its key, at the paths given: its set's (a
    member's certificate naming its address, also presented as a client to its primary), or a throwaway
    self-signed one a single instance starts with (nobody trusts it; the engine cannot turn TLS on later
    without a restart). Made anew at each render (`fresh`)."""
    issued = topology.tls if topology is not None and topology.tls is not None else self_signed(
        f"reddwarf instance {placement.instance_id}", (placement.address,))
    return (
        FileSpec(ca, issued.ca_certificate, mode=0o600, fresh=True),
        FileSpec(cert, issued.certificate, mode=0o600, fresh=True),
        FileSpec(key, issued.key.reveal(), mode=0o600, secret=True, fresh=True),
    )
