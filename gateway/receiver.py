"""The C-STORE receiver (SCP): what it negotiates, and what it answers for each instance.

    server = Receiver(spool, studies, ReceiverLimits(...)).start("CXRQ", "127.0.0.1", 11112)

It answers C-ECHO and takes CR and DX For Presentation images in every transfer syntax the
reader decodes. Each instance arrives as a chunked temporary file inside the spool (never held
in memory whole), is checked for its UIDs and kept durably (gateway.spool) before success goes
back. Statuses: 0x0000 kept; 0xA900 no Study/Series/SOP Instance UID (nothing kept); 0xA700
spool full, disk full or instance too large; 0xC000 anything else. No exception leaves a
handler (pynetdicom would answer 0xC211). Log lines name UIDs and sizes, never a patient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.spool import Spool, SpoolFull
from gateway.studies import Received, Studies

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger("cxrq.gateway")

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
IMAGE_CLASSES = (CR_STORAGE, DX_FOR_PRESENTATION)
# What training.data.dicom decodes (pydicom with the pylibjpeg plugins): pynetdicom offers only
# the uncompressed syntaxes by default, and a modality that sends JPEG would be refused.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
SUCCESS, OUT_OF_RESOURCES, NOT_MATCHING, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900, 0xC000
# The largest PDU we take. pynetdicom's default (16 KiB) cuts a 512 x 512 16-bit instance into 32
# PDUs, each decoded in Python: 512 KiB took intake from 87 to 123 instances/s and full-size
# instances from 97 to 237 MB/s (benchmarks/gateway_bench.py).
MAX_PDU_BYTES = 512 * 1024
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class ReceiverLimits:
    allow: tuple[str, ...] = ()  # calling AE titles let in; empty: any
    max_associations: int = 10
    max_instance_bytes: int = 512 * 2**20


class Receiver:
    """The SCP's handlers over a spool and the open studies."""

    def __init__(self, spool: Spool, studies: Studies, limits: ReceiverLimits) -> None:
        self.spool, self.studies, self.limits = spool, studies, limits

    def application_entity(self, ae_title: str) -> AE:
        from pynetdicom import AE, _config

        # Received data sets go to a temporary file (in the spool's tmp/, see Listener), not
        # to memory; the file is then renamed into place, never copied.
        _config.STORE_RECV_CHUNKED_DATASET = True
        ae = AE(ae_title=ae_title)
        ae.maximum_associations = self.limits.max_associations
        ae.maximum_pdu_size = MAX_PDU_BYTES
        if self.limits.allow:
            ae.require_calling_aet = list(self.limits.allow)
        ae.add_supported_context("1.2.840.10008.1.1")  # Verification (C-ECHO)
        for sop_class in IMAGE_CLASSES:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        return ae

    def start(self, ae_title: str, host: str, port: int) -> ThreadedAssociationServer:
        from pynetdicom import evt

        handlers = [
            (evt.EVT_C_ECHO, lambda _event: SUCCESS),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_release),
            (evt.EVT_ABORTED, self.on_release),
        ]
        ae = self.application_entity(ae_title)
        return ae.start_server((host, port), block=False, evt_handlers=handlers)

    def on_release(self, event: Any) -> None:
        try:
            self.studies.released(id(event.assoc))
        except Exception:  # a failing close must not take the association thread down
            log.exception("closing the studies of an association failed")

    def on_store(self, event: Any) -> int:
        """The status for one C-STORE request; never raises."""
        try:
            status = self._store(Path(event.dataset_path), event)
        except SpoolFull as exc:
            log.warning("refused an instance: %s (0xA700)", exc.strerror or exc)
            status = OUT_OF_RESOURCES
        except OSError as exc:
            log.warning("refused an instance: %s (0xA700)", type(exc).__name__)
            status = OUT_OF_RESOURCES
        except Exception as exc:
            log.warning("refused an instance: %s (0xC000)", type(exc).__name__)
            status = CANNOT_UNDERSTAND
        return status

    def _store(self, received: Path, event: Any) -> int:
        import pydicom

        size = received.stat().st_size
        if size > self.limits.max_instance_bytes:
            log.warning(
                "refused an instance of %d bytes: over %d", size, self.limits.max_instance_bytes
            )
            return OUT_OF_RESOURCES
        ds = pydicom.dcmread(received, stop_before_pixels=True, force=True)
        uids = [str(ds.get(k, "") or "").strip() for k in _UIDS]
        if not all(uids):
            missing = ", ".join(k for k, v in zip(_UIDS, uids, strict=True) if not v)
            log.warning("refused an instance without %s (0xA900)", missing)
            return NOT_MATCHING
        study, series, sop = uids
        try:
            final = self.spool.keep(received, study, sop)
        except ValueError as exc:  # a UID that is not one
            log.warning("refused an instance: %s (0xA900)", exc)
            return NOT_MATCHING
        calling = event.assoc.requestor.ae_title
        calling = calling.decode() if isinstance(calling, bytes) else str(calling)
        item = Received(
            sop, series, study, str(ds.get("SOPClassUID", "")), final, size, calling.strip()
        )
        self.studies.add(id(event.assoc), item)
        log.info("kept instance %s of study %s (%d bytes)", sop, study, size)
        return SUCCESS
