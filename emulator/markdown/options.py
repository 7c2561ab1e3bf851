"""`conversionOptions`, the optional multipart field of `POST tomarkdown` (and the binding's second argument).

Fields from https://developers.cloudflare.com/workers-ai/features/markdown-conversion/conversion-options/:
`html.hostname`, `html.cssSelector`, `pdf.metadata`, `image.descriptionLanguage`. Unknown keys are ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Options(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HtmlOptions(_Options):
    hostname: str | None = None  # base for relative links when the page has no <base>
    cssSelector: str | None = None  # Cloudflare's spelling


class PdfOptions(_Options):
    metadata: bool = True


class ImageOptions(_Options):
    descriptionLanguage: Literal["en", "it", "de", "es", "fr", "pt"] | None = None


class ConversionOptions(_Options):
    html: HtmlOptions = HtmlOptions()
    pdf: PdfOptions = PdfOptions()
    image: ImageOptions = ImageOptions()
