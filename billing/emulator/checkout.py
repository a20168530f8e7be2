"""The emulated Checkout page (setup mode) and the card form's validation."""
from __future__ import annotations

import re
from datetime import date

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Add a card · Stripe emulator</title>
<style>
 body{font:16px/1.5 system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
 main{max-width:420px;margin:48px auto;background:#fff;border-radius:10px;padding:28px;box-shadow:0 2px 8px #0002}
 label{display:block;margin-top:14px;font-weight:600} input{width:100%;box-sizing:border-box;padding:10px;font-size:16px;border:1px solid #cfd7df;border-radius:6px}
 .row{display:flex;gap:12px} .row>div{flex:1} button{margin-top:20px;width:100%;padding:12px;font-size:16px;background:#635bff;color:#fff;border:0;border-radius:6px}
 .error{color:#b42318;background:#fef3f2;padding:10px;border-radius:6px} .note{color:#697386;font-size:14px}
</style></head><body><main>
<p class="note">Stripe emulator · test mode</p>
<h1>Add a card</h1>
<p>Saving a card for {{ email }}. You will not be charged now.</p>
{% if error %}<p class="error" role="alert" id="card-error">{{ error }}</p>{% endif %}
<form method="post" novalidate>
 <label for="number">Card number</label>
 <input id="number" name="number" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242"
        value="{{ form.get('number', '') }}" {% if error %}aria-describedby="card-error" aria-invalid="true"{% endif %}>
 <div class="row">
  <div><label for="expiry">Expiry (MM / YY)</label>
   <input id="expiry" name="expiry" autocomplete="cc-exp" placeholder="12 / 34" value="{{ form.get('expiry', '') }}"></div>
  <div><label for="cvc">CVC</label><input id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" placeholder="123"></div>
 </div>
 <label for="name">Name on card</label>
 <input id="name" name="name" autocomplete="cc-name" value="{{ form.get('name', '') }}">
 <button type="submit">Save card</button>
</form>
<p class="note">Test cards: 4242 4242 4242 4242 works · 4000 0000 0000 0341 saves but every charge fails ·
4000 0000 0000 0002 is declined · 4000 0025 0000 3155 asks for authentication now, then pays ·
4000 0027 6000 3184 asks for authentication now and on every payment. Any future expiry, any CVC.</p>
{% if session.cancel_url %}<p><a href="{{ session.cancel_url }}">Cancel and go back</a></p>{% endif %}
</main></body></html>
"""


AUTHENTICATE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authenticate your card · Stripe emulator</title>
<style>
 body{font:16px/1.5 system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
 main{max-width:420px;margin:48px auto;background:#fff;border-radius:10px;padding:28px;box-shadow:0 2px 8px #0002}
 button{margin-top:14px;width:100%;padding:12px;font-size:16px;border:0;border-radius:6px}
 .complete{background:#635bff;color:#fff} .fail{background:#fff;color:#b42318;border:1px solid #b42318}
 .note{color:#697386;font-size:14px}
</style></head><body><main>
<p class="note">Stripe emulator · test mode · 3D Secure</p>
<h1>Authenticate your card</h1>
<p>Your bank asks you to confirm that you are saving the card ending {{ last4 }}.</p>
<form method="post" action="/checkout/{{ session.id }}/authenticate">
 <button class="complete" type="submit" name="outcome" value="complete">Complete authentication</button>
 <button class="fail" type="submit" name="outcome" value="fail">Fail authentication</button>
</form>
</main></body></html>
"""


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def read_card(form, today: date | None = None) -> tuple[str, int, int]:
    """(number, exp_month, exp_year) from the form, or ValueError with the message Checkout shows."""
    today = today or date.today()
    number = re.sub(r"[\s-]", "", form.get("number", ""))
    if not re.fullmatch(r"\d{13,19}", number) or not luhn_ok(number):
        raise ValueError("Your card number is invalid.")
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", form.get("expiry", ""))
    if not match or not 1 <= int(match[1]) <= 12:
        raise ValueError("Your card's expiration date is incomplete.")
    month, year = int(match[1]), int(match[2])
    year += 2000 if year < 100 else 0
    if (year, month) < (today.year, today.month):
        raise ValueError("Your card's expiration year is in the past.")
    if not re.fullmatch(r"\d{3,4}", form.get("cvc", "").strip()):
        raise ValueError("Your card's security code is incomplete.")
    return number, month, year


INVOICE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {{ invoice.number }}</title></head>
<body>
<h1>Invoice {{ invoice.number }}</h1>
<p>{{ "%.2f"|format(invoice.amount_due / 100) }} {{ invoice.currency|upper }} · <strong id="status">{{ invoice.status }}</strong></p>
<ul>{% for line in invoice.lines.data %}<li>{{ line.description }}: {{ "%.2f"|format(line.amount / 100) }}</li>{% endfor %}</ul>
{% if invoice.invoice_pdf %}<p><a href="{{ invoice.invoice_pdf }}">Download the PDF</a></p>{% endif %}
{% if invoice.status == "open" %}
<form method="post"><p>Your bank asks you to confirm this payment (test mode: it always succeeds).</p>
<button type="submit">Confirm the payment</button></form>
{% endif %}
</body></html>
"""
