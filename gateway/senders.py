"""Sending result objects to a destination: C-STORE to an AE (pynetdicom SCU) or STOW-RS to a
DICOMweb URL (dicomweb-client).

    sender = sender_for("PACS@10.0.0.5:104", calling_ae="CXRQ")
    errors = sender.send(datasets)   # one entry per dataset: None (stored) or the reason

A destination that cannot be reached at all raises Unreachable: everything stays pending and is
tried again later; a per-object refusal is that object's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# C-STORE statuses that mean stored: success, and the warnings "coerced", "elements discarded"
# and "does not match SOP class" (PS3.4 B.2.3), which a PACS sends and still keeps the object.
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class Unreachable(ConnectionError):
    """The destination did not take an association or a request at all."""


class Sender(Protocol):
    destination: str

    def send(self, datasets: Sequence[Dataset]) -> list[str | None]: ...


def parse_ae(destination: str) -> tuple[str, str, int]:
    """AE@HOST:PORT -> (AE title, host, port); ValueError with the expected form."""
    ae, at, address = destination.partition("@")
    host, colon, port = address.rpartition(":")
    if not (ae and at and host and colon and port.isdigit()) or len(ae) > 16:
        raise ValueError(
            f"destination {destination!r} is not AE@HOST:PORT (e.g. PACS@10.0.0.5:104)"
        )
    return ae, host, int(port)


def sender_for(destination: str, calling_ae: str = "CXRQ", timeout: float = 30.0) -> Sender:
    if destination.startswith(("http://", "https://")):
        return StowSender(destination, timeout)
    return StoreSender(destination, calling_ae, timeout)


@dataclass
class StoreSender:
    """C-STORE over one association per batch."""

    destination: str
    calling_ae: str = "CXRQ"
    timeout: float = 30.0

    def send(self, datasets: Sequence[Dataset]) -> list[str | None]:
        from pynetdicom import AE

        called, host, port = parse_ae(self.destination)
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        assoc = ae.associate(host, port, ae_title=called)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "no answer"
            raise Unreachable(f"{self.destination}: association {why}")
        try:
            return [self._one(assoc, ds) for ds in datasets]
        finally:
            if assoc.is_established:
                assoc.release()

    def _one(self, assoc: object, ds: Dataset) -> str | None:
        if not assoc.is_established:
            raise Unreachable(f"{self.destination}: association lost")
        status = assoc.send_c_store(ds)
        code = getattr(status, "Status", None)
        if code is None:  # no response: the connection went away mid-send
            raise Unreachable(f"{self.destination}: no C-STORE response")
        return None if int(code) in STORED else f"C-STORE status 0x{int(code):04X}"


@dataclass
class StowSender:
    """STOW-RS: one request per batch, to the study of each object."""

    destination: str
    timeout: float = 30.0

    def send(self, datasets: Sequence[Dataset]) -> list[str | None]:
        import requests
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(self.destination, timeout=self.timeout)
        errors: list[str | None] = []
        for ds in datasets:
            try:
                client.store_instances([ds])
                errors.append(None)
            except requests.exceptions.HTTPError as exc:
                code = exc.response.status_code if exc.response is not None else "?"
                if code in (502, 503, 504):
                    raise Unreachable(f"{self.destination}: HTTP {code}") from None
                errors.append(f"STOW-RS HTTP {code}")
            except requests.exceptions.RequestException as exc:
                raise Unreachable(f"{self.destination}: {type(exc).__name__}") from None
        return errors
