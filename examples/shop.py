"""An online shop's workflows, runnable with `make dev` (or `reverb dev examples/shop.py`).

Two flows:
- a sign-up: create the user, wait a little, send a follow-up;
  `reverb send user.signed_up --data '{"email": "ada@example.com"}'`
- an order: price it, reserve stock by invoking another function and using its
  result, then announce the confirmed order with an event that a third function
  reacts to;
  `reverb send order.placed --data '{"id": "o-1", "items": [{"sku": "mug", "quantity": 2}]}'`

Every step here is side-effect free (no real database, no real email), so the
app is safe to run anywhere; a real app would do its I/O inside `step.run`.
"""

import hashlib
from typing import Any

import reverb
from reverb import Context, event

app = reverb.App("shop")

PRICES = {"mug": 1200, "tee": 2500, "sticker": 300}  # cents


def create_user(email: str) -> dict[str, str]:
    """Pretend to insert a user row; the id is derived from the email, so it is stable."""
    if "@" not in email:
        raise reverb.NonRetriableError(f"not an email address: {email!r}")
    return {"id": "user-" + hashlib.sha256(email.encode()).hexdigest()[:10], "email": email}


def send_email(to: str, subject: str) -> dict[str, str]:
    """Pretend to send an email; returns what a mail API would acknowledge."""
    return {"to": to, "subject": subject, "status": "queued"}


def price(items: list[dict[str, Any]]) -> int:
    """The order's total in cents."""
    unknown = [item["sku"] for item in items if item["sku"] not in PRICES]
    if unknown:
        raise reverb.NonRetriableError(f"unknown products: {', '.join(unknown)}")
    return sum(PRICES[item["sku"]] * int(item["quantity"]) for item in items)


def reserve(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pretend to reserve stock in a warehouse system."""
    skus = ",".join(sorted(item["sku"] for item in items))
    return {"reservation": "res-" + hashlib.sha256(skus.encode()).hexdigest()[:8]}


@app.function("handle-sign-up", trigger=event("user.signed_up"), retries=4)
async def handle_sign_up(ctx: Context) -> dict[str, str]:
    user = await ctx.step.run("create-user", create_user, ctx.event.data["email"])
    await ctx.step.sleep("wait-a-moment", "10s")  # "14d" in real life
    await ctx.step.run("send-follow-up", send_email, user["email"], "How is it going?")
    return {"user": user["id"]}


@app.function("place-order", trigger=event("order.placed"))
async def place_order(ctx: Context) -> dict[str, Any]:
    order = ctx.event.data
    total = await ctx.step.run("price-order", price, order["items"])
    # A log document of this run (`reverb logs --run ID`), written once however often the
    # function replays past this point.
    ctx.logger.info("order priced", order=order["id"], total=total)
    # Runs "reserve-stock" as a run of its own and waits for its return value.
    stock = await ctx.step.invoke(
        "reserve-stock", "reserve-stock", {"items": order["items"]}, timeout="5m"
    )
    await ctx.step.send_event(
        "announce",
        "order.confirmed",
        {"order": order["id"], "total": total, "email": order.get("email")},
    )
    return {"order": order["id"], "total": total, "reservation": stock["reservation"]}


@app.function("reserve-stock", trigger=event("stock.reserve_requested"))
async def reserve_stock(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.step.run("reserve", reserve, ctx.event.data["items"])
    return result


@app.function("send-receipt", trigger=event("order.confirmed"))
async def send_receipt(ctx: Context) -> dict[str, str]:
    to = ctx.event.data.get("email") or "customer@example.com"
    subject = f"Order {ctx.event.data['order']}: {ctx.event.data['total'] / 100:.2f} EUR"
    sent: dict[str, str] = await ctx.step.run("send-receipt", send_email, to, subject)
    return sent
