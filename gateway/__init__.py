"""DICOM networking and DICOM results: the C-STORE receiver and its spool, the SR and
secondary-capture objects that carry a scored X-ray's answer back into its study, and the outbox
that sends them. Modules here never import torch or training at import time."""
