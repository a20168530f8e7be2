"""A minimal valid PDF of an emulated invoice (what `invoice_pdf` links to): one page of text."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _text(value: str) -> str:
    """A PDF literal string: ASCII only, with its delimiters escaped."""
    value = value.encode("ascii", "replace").decode()
    return "(" + value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def invoice_document(invoice: dict[str, Any], account_name: str) -> bytes:
    """The invoice as a PDF 1.4 file (Helvetica, a correct cross-reference table)."""
    money = f"{invoice['amount_due'] / 100:.2f} {invoice['currency'].upper()}"
    rows = [f"{account_name}: invoice {invoice['number']}",
            f"Date: {datetime.fromtimestamp(invoice['created'], UTC):%Y-%m-%d}",
            f"Billed to: {invoice.get('customer_email') or invoice['customer']}", ""]
    rows += [f"{line['description'] or ''}: {line['amount'] / 100:.2f}" for line in invoice["lines"]["data"]]
    rows += ["", f"Amount due: {money}", f"Status: {invoice['status']}"]
    stream = "BT /F1 12 Tf 56 780 Td 16 TL " + " ".join(f"{_text(r)} '" for r in rows) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        "/Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(stream.encode())} >>\nstream\n{stream}\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
