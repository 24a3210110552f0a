"""Write pictures (annotated plan views) as DICOM Secondary Capture images, and the report as an Encapsulated PDF,
that a PACS or viewer takes, with no identity."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage, SecondaryCaptureImageStorage, generate_uid

from ..errors import NeedleplanError
from .atomic import atomic_file
from .dicom_write import new_dataset


class CaptureSeries:
    """One series of Secondary Capture images (one study, one series UID), written one file at a time.

    Parameters
    ----------
    description : str
        SeriesDescription (e.g. "needleplan plan views").
    series_number : int
    """

    def __init__(self, description: str, series_number: int = 900) -> None:
        self.description = description
        self.series_number = series_number
        self.study_uid, self.series_uid = generate_uid(), generate_uid()
        self.when = datetime.datetime.now(datetime.timezone.utc)
        self.count = 0

    def write(self, rgb: np.ndarray, path: str | Path, title: str) -> Path:
        """Write an (H, W, 3) uint8 RGB picture as the next image of the series, atomically; returns the path.

        ``title`` becomes the ImageComments (what the picture shows, e.g. "tfesi-L4-left view 3: Trajectory").
        """
        pixels = np.asarray(rgb)
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise NeedleplanError(f"a secondary capture needs an RGB uint8 picture, got {pixels.dtype} "
                                  f"{pixels.shape}")
        self.count += 1
        ds = self._dataset(SecondaryCaptureImageStorage, self.series_uid, self.description, self.series_number,
                           self.count)
        ds.Modality = "OT"
        ds.ImageComments = title[:10240]
        ds.BurnedInAnnotation = "YES"  # the overlays (target, canal, roots, labels) are drawn into the pixels
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        path = Path(path)
        with atomic_file(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return path

    def write_pdf(self, pdf: bytes, path: str | Path, title: str) -> Path:
        """Write a PDF document (the report) as a DICOM Encapsulated PDF in the same study, a series of its own.

        ``title`` becomes the DocumentTitle (at most 64 characters).
        """
        if not pdf.startswith(b"%PDF"):
            raise NeedleplanError("an Encapsulated PDF needs a PDF document (it must start with %PDF)")
        ds = self._dataset(EncapsulatedPDFStorage, generate_uid(), f"{self.description}: report",
                           self.series_number + 1, 1)
        ds.Modality = "DOC"
        ds.DocumentTitle = title[:64]
        ds.BurnedInAnnotation = "YES"
        ds.ConceptNameCodeSequence = []
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")  # OB values have an even length
        ds.EncapsulatedDocumentLength = len(pdf)
        path = Path(path)
        with atomic_file(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return path

    def _dataset(self, sop_class_uid: str, series_uid: str, description: str, series_number: int,
                 instance: int) -> Dataset:
        """A dataset of this study: identity removed, dates, series and instance numbers."""
        ds = new_dataset(sop_class_uid)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study_uid, series_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = self.when.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = self.when.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.ConversionType = "WSD"  # workstation: made by software
        ds.SeriesDescription = description[:64]
        ds.SeriesNumber, ds.InstanceNumber = series_number, instance
        return ds
