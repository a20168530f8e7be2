"""Generate `billing/emulator/schema.json`, the emulator's definition of the Stripe API it serves.

    python -m billing.emulator.schema_gen --spec PATH/TO/spec3.json        # rewrite schema.json
    python -m billing.emulator.schema_gen --spec PATH/TO/spec3.json --check  # exit 1 if it is stale

Two references, read without importing or running either:

* stripe-python's generated code, as installed (its version pins `stripe.api_version`). It is
  generated from Stripe's OpenAPI spec *at the pinned version*, so it is the authority on what
  exists at that version. From its services (`stripe/**/_*_service.py`) we take each operation's
  HTTP method, path, request-params TypedDict and response class; from the TypedDicts
  (`stripe/params/**`) every parameter, nested hash and array, whether it is `Required`, its
  scalar type, `Literal[...]` enum values and `Literal['']` (the value may be posted empty to unset
  it); from the resource classes (`stripe/_subscription.py` …) every field of every response object
  with its type, `Optional` (nullable), `ExpandableField` and `ListObject`.
* Stripe's public OpenAPI spec3.json (dated 2023-08-16, older than the pinned version). It only
  adds what stripe-python's code does not carry, and only where the parameter or field exists
  with the same shape in both: string `maxLength`; whether a response field is always present
  (in `required` or `nullable`) or conditional (neither: `customer.sources`, a PaymentMethod's
  `acss_debit` …); and whether an enum that stripe-python types as `Literal[…]|str` is open (spec3
  gives a free string beside the enum) or closed (stripe-python adds `|str` to every enum so that
  old SDKs survive new values; Stripe itself refuses values outside the enum).

Where the two disagree the pinned version wins: a parameter or field that is in spec3 but not in
stripe-python (`payment_method_types` on Checkout Session create, removed 2026-09-30.endive;
`subscription.current_period_*` and `invoice.subscription`, moved 2025-03-31.basil) does not
exist; one in stripe-python but not in spec3 (`invoice.parent`, `items.data[].current_period_*`)
does, always present when non-`Optional`, present-or-null when `Optional` (a PaymentMethod's
per-type hashes, named after a `type` value, are conditional instead); enum values, `Required` and
nullability come from stripe-python even when spec3 says otherwise. spec3's `required` for request
parameters is not used: at the pinned version several became optional because an alternative was
added (`customer` or `customer_account`); `billing.emulator.api` states those one-of rules by hand.
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("schema.json")

# The operations the emulator serves: (HTTP method, path as stripe-python writes it).
OPERATIONS = [
    ("post", "/v1/customers"),
    ("get", "/v1/customers"),
    ("get", "/v1/customers/{customer}"),
    ("post", "/v1/customers/{customer}"),
    ("delete", "/v1/customers/{customer}"),
    ("post", "/v1/payment_methods"),
    ("get", "/v1/payment_methods"),
    ("get", "/v1/payment_methods/{payment_method}"),
    ("post", "/v1/payment_methods/{payment_method}/attach"),
    ("post", "/v1/payment_methods/{payment_method}/detach"),
    ("post", "/v1/checkout/sessions"),
    ("get", "/v1/checkout/sessions"),
    ("get", "/v1/checkout/sessions/{session}"),
    ("post", "/v1/checkout/sessions/{session}/expire"),
    ("get", "/v1/setup_intents/{intent}"),
    ("post", "/v1/subscriptions"),
    ("get", "/v1/subscriptions"),
    ("get", "/v1/subscriptions/{subscription_exposed_id}"),
    ("post", "/v1/subscriptions/{subscription_exposed_id}"),
    ("delete", "/v1/subscriptions/{subscription_exposed_id}"),
    ("get", "/v1/invoices"),
    ("get", "/v1/invoices/{invoice}"),
    ("post", "/v1/invoices/{invoice}/pay"),
    ("post", "/v1/invoices/{invoice}/mark_uncollectible"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("post", "/v1/products"),
    ("get", "/v1/products"),
    ("post", "/v1/products/{id}"),
    ("post", "/v1/prices"),
    ("get", "/v1/prices"),
    ("get", "/v1/invoice_payments"),
    ("post", "/v1/invoices/create_preview"),
]

# Resources described field by field (others appear as opaque objects or ids): every object the
# emulator returns, and the objects inside them that it fills in.
RESOURCES = {
    "stripe._customer:Customer", "stripe._payment_method:PaymentMethod", "stripe.checkout._session:Session",
    "stripe._setup_intent:SetupIntent", "stripe._subscription:Subscription",
    "stripe._subscription_item:SubscriptionItem", "stripe._price:Price", "stripe._plan:Plan",
    "stripe._invoice:Invoice", "stripe._invoice_line_item:InvoiceLineItem", "stripe._event:Event",
    "stripe._product:Product", "stripe._invoice_payment:InvoicePayment", "stripe._payment_intent:PaymentIntent",
}
SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Decimal": "decimal"}


def stripe_root() -> Path:
    spec = importlib.util.find_spec("stripe")
    assert spec and spec.origin, "stripe-python is not installed"
    return Path(spec.origin).parent


class Source:
    """stripe-python's files, parsed (never imported)."""

    def __init__(self, root: Path):
        self.root = root

    @cache
    def module(self, name: str) -> ast.Module:
        path = self.root.joinpath(*name.split(".")[1:])
        path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        return ast.parse(path.read_text())

    @cache
    def imports(self, name: str) -> dict[str, tuple[str, str]]:
        """Every name a module imports (TYPE_CHECKING blocks included) or defines at top level."""
        table: dict[str, tuple[str, str]] = {}
        for node in ast.walk(self.module(name)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stripe"):
                for alias in node.names:
                    table[alias.asname or alias.name] = (node.module, alias.name)
        for node in self.module(name).body:
            if isinstance(node, ast.ClassDef):
                table[node.name] = (name, node.name)
        return table

    def cls(self, module: str, path: str) -> ast.ClassDef:
        """A class by dotted path inside a module (`Subscription.AutomaticTax`)."""
        body: list[ast.stmt] = self.module(module).body
        node = None
        for part in path.split("."):
            node = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == part)
            body = node.body
        assert node is not None
        return node


def expr(node: ast.expr) -> ast.expr:
    """A string annotation ("Literal['']|Foo") parsed into the expression it stands for."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return expr(ast.parse(node.value, mode="eval").body)
    return node


def union_members(node: ast.expr) -> list[ast.expr]:
    node = expr(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return union_members(node.left) + union_members(node.right)
    if isinstance(node, ast.Subscript) and _name(node.value) in ("Union", "Optional"):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        members = [m for i in inner for m in union_members(i)]
        return members + ([ast.Constant(None)] if _name(node.value) == "Optional" else [])
    return [node]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def _args(node: ast.Subscript) -> list[ast.expr]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


class Spec3:
    """Stripe's OpenAPI spec3.json, with $ref, anyOf and allOf looked through."""

    def __init__(self, path: Path | None):
        self.doc = json.loads(path.read_text()) if path else None
        self.version = self.doc["info"]["version"] if self.doc else None

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self.doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def members(self, node: Any) -> list[dict]:
        """The alternatives of a schema node (one unless anyOf/oneOf)."""
        node = self.resolve(node)
        if not isinstance(node, dict):
            return []
        alts = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
        if alts:
            return [m for a in alts for m in self.members(a)]
        return [node]

    def object_member(self, node: Any) -> dict | None:
        return next((m for m in self.members(node) if m.get("type") == "object" or "properties" in m), None)

    def schema(self, name: str) -> dict | None:
        return self.doc["components"]["schemas"].get(name) if self.doc else None

    def request(self, method: str, path: str) -> dict | None:
        """The spec3 schema of an operation's parameters, as one object schema."""
        if not self.doc:
            return None
        op = self.doc["paths"].get(path, {}).get(method)
        if not op:
            return None
        if method == "post":
            return (op.get("requestBody") or {}).get("content", {}).get(
                "application/x-www-form-urlencoded", {}).get("schema")
        return {"type": "object", "properties": {p["name"]: p["schema"] for p in op.get("parameters", [])
                                                 if p.get("in") == "query"}}


class Generator:
    def __init__(self, src: Source, spec: Spec3):
        self.src, self.spec = src, spec
        self.defs: dict[str, Any] = {}
        self.notes: dict[str, list[str]] = {"open_enums": [], "closed_enums_spec3_absent": []}

    # Operations ---------------------------------------------------------------------------------
    def services(self) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(self.src.root.rglob("_*_service.py")):
            module = "stripe." + ".".join(path.relative_to(self.src.root).with_suffix("").parts)
            for cls in (n for n in self.src.module(module).body if isinstance(n, ast.ClassDef)):
                for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                    call = next((c for c in ast.walk(fn) if isinstance(c, ast.Call)
                                 and _name(c.func) == "_request" and len(c.args) >= 2), None)
                    if call is None:
                        continue
                    method = call.args[0].value if isinstance(call.args[0], ast.Constant) else None
                    target = call.args[1]
                    if isinstance(target, ast.Call):
                        target = target.func.value  # "/v1/x/{id}".format(...)
                    if not (isinstance(target, ast.Constant) and (method, target.value) in OPERATIONS):
                        continue
                    params = next((a.annotation for a in fn.args.args + fn.args.kwonlyargs
                                   if a.arg == "params"), None)
                    found[(method, target.value)] = {
                        "module": module, "service": f"{cls.name}.{fn.name}",
                        "params": params, "returns": fn.returns,
                    }
        missing = [op for op in OPERATIONS if op not in found]
        assert not missing, f"stripe-python has no service method for {missing}"
        return found

    def generate(self) -> dict[str, Any]:
        operations = {}
        for (method, path), svc in sorted(self.services().items()):
            params_cls = next(m for m in union_members(svc["params"]) if _name(m) not in ("", "None"))
            module, name = self.src.imports(svc["module"])[_name(params_cls)]
            request = self.spec.request(method, path)
            ref = self.params_def(module, name, request)
            response = self.response_type(svc["module"], svc["returns"])
            operations[f"{method.upper()} {path}"] = {
                "service": svc["service"], "params": ref, "response": response,
            }
        return {
            "generated_by": "python -m billing.emulator.schema_gen",
            "stripe_python": importlib.metadata.version("stripe"),
            "api_version": self._api_version(),
            "spec3_version": self.spec.version,
            "operations": operations,
            "defs": dict(sorted(self.defs.items())),
            "notes": {k: sorted(set(v)) for k, v in self.notes.items()},
        }

    def _api_version(self) -> str:
        tree = self.src.module("stripe._api_version")
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(_name(t) == "CURRENT" for t in node.targets):
                return node.value.value
        raise AssertionError("stripe._api_version.CURRENT not found")

    # Request parameters ---------------------------------------------------------------------------
    def params_def(self, module: str, name: str, spec: Any, where: str = "") -> str:
        key = f"{module}:{name}"
        if key in self.defs:
            return key
        self.defs[key] = None  # a placeholder breaks cycles
        cls = self.src.cls(module, name)
        spec_obj = self.spec.object_member(spec) if spec is not None else None
        spec_props = (spec_obj or {}).get("properties", {})
        fields = {}
        for stmt in cls.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
                continue
            ann, required = expr(stmt.annotation), True
            if isinstance(ann, ast.Subscript) and _name(ann.value) in ("NotRequired", "Required"):
                required = _name(ann.value) == "Required"
                ann = expr(_args(ann)[0])
            fname = stmt.target.id
            param = f"{where}[{fname}]" if where else fname
            fields[fname] = {"required": required,
                             **self.param_type(module, ann, spec_props.get(fname) if spec_obj else None, param)}
        self.defs[key] = {"kind": "params", "fields": fields}
        return key

    def param_type(self, module: str, ann: ast.expr, spec: Any, param: str) -> dict[str, Any]:
        """{"empty": bool, "alts": [...]} for one parameter."""
        members = union_members(ann)
        literals = [m.value for m in members if isinstance(m, ast.Constant) and m.value is not None]
        for m in members:
            if isinstance(m, ast.Subscript) and _name(m.value) == "Literal":
                literals += [a.value for a in _args(m)]
        others = [m for m in members if not (isinstance(m, ast.Subscript) and _name(m.value) == "Literal")
                  and not isinstance(m, ast.Constant)]
        empty = "" in literals
        values = [v for v in literals if v != ""]
        alts: list[dict[str, Any]] = []
        spec_members = self.spec.members(spec) if spec is not None else []
        has_str = any(_name(m) == "str" for m in others)
        if values:
            open_enum = has_str and any(m.get("type") == "string" and "enum" not in m for m in spec_members)
            if has_str and not spec_members:
                self.notes["closed_enums_spec3_absent"].append(param)
            if open_enum:
                self.notes["open_enums"].append(param)
            else:
                alts.append({"k": "enum", "values": values})
                others = [m for m in others if _name(m) != "str"]
        for m in others:
            alt = self.param_alt(module, m, spec_members, param)
            if alt not in alts:  # Dict[str, str]|UntypedStripeObject[str] is one map
                alts.append(alt)
        return {"empty": empty, "alts": alts}

    def param_alt(self, module: str, node: ast.expr, spec_members: list[dict], param: str) -> dict[str, Any]:
        name = _name(node) if not isinstance(node, ast.Subscript) else _name(node.value)
        if name in SCALARS:
            alt: dict[str, Any] = {"k": SCALARS[name]}
            if name == "str":
                limits = [m["maxLength"] for m in spec_members if m.get("type") == "string"
                          and "enum" not in m and "maxLength" in m]
                if limits:
                    alt["max_length"] = max(limits)
            return alt
        if name == "Any":
            return {"k": "any"}
        if isinstance(node, ast.Subscript) and name == "List":
            items = next((m.get("items") for m in spec_members if m.get("type") == "array"), None)
            return {"k": "array", "items": self.param_type(module, expr(_args(node)[0]), items, f"{param}[0]")}
        if isinstance(node, ast.Subscript) and name in ("Dict", "UntypedStripeObject"):
            value = expr(_args(node)[-1])
            extra = next((m.get("additionalProperties") for m in spec_members if m.get("type") == "object"), None)
            return {"k": "map", "values": self.param_type(module, value, extra if isinstance(extra, dict) else None,
                                                          f"{param}[key]")}
        if name in self.src.imports(module):
            target_module, target = self.src.imports(module)[name]
            if target_module.startswith("stripe.params"):
                spec_obj = next((m for m in spec_members if m.get("type") == "object" or "properties" in m), None)
                return {"k": "object", "ref": self.params_def(target_module, target, spec_obj, param)}
        raise AssertionError(f"unhandled parameter type {ast.unparse(node)} at {param}")

    # Responses ----------------------------------------------------------------------------------
    def response_type(self, module: str, returns: ast.expr) -> dict[str, Any]:
        node = expr(returns)
        if isinstance(node, ast.Subscript) and _name(node.value) == "ListObject":
            return {"k": "list", "items": self.resource_alt(module, expr(_args(node)[0]))}
        return self.resource_alt(module, node)

    def resource_alt(self, module: str, node: ast.expr) -> dict[str, Any]:
        target_module, target = self.src.imports(module)[_name(node)]
        key = f"{target_module}:{target}"
        if key not in RESOURCES:
            return {"k": "object", "ref": None, "resource": target}
        return {"k": "object", "ref": self.object_def(target_module, target, self._spec_for(target_module, target))}

    def _spec_for(self, module: str, cls_name: str) -> dict | None:
        cls = self.src.cls(module, cls_name)
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and _name(stmt.target) == "OBJECT_NAME":
                literal = _args(expr(stmt.annotation))[0]
                return self.spec.schema(_args(literal)[0].value)
        return None

    def object_def(self, module: str, path: str, spec: dict | None) -> str:
        key = f"{module}:{path}"
        if key in self.defs:
            return key
        self.defs[key] = None
        cls = self.src.cls(module, path)
        spec = self.spec.resolve(spec) if spec else None
        props = (spec or {}).get("properties", {})
        required = set((spec or {}).get("required", []))
        fields: dict[str, Any] = {}
        anns = [s for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                and _name(s.target) != "OBJECT_NAME"]
        for stmt in anns:
            fname = stmt.target.id
            members = union_members(stmt.annotation)
            nullable = any(isinstance(m, ast.Constant) and m.value is None for m in members)
            members = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
            if any(isinstance(m, ast.Subscript) and _name(m.value) == "Literal" for m in members):
                members = [m for m in members if _name(m) != "str"]  # `|str` only keeps old SDKs alive
            if fname == "deleted" and all(isinstance(m, ast.Subscript) and _name(m.value) == "Literal"
                                          for m in members):
                continue  # `deleted: Literal[True]` belongs to the deleted stub (spec3's deleted_*), not the object
            if fname in props:
                presence = "always" if fname in required or props[fname].get("nullable") else "conditional"
            elif nullable and fname in self.payment_method_types() and "PaymentMethod" in path:
                presence = "conditional"  # a per-type hash: only the one for the payment method's type is there
            else:
                presence = "always"
            alts: list[dict[str, Any]] = []
            for m in members:
                alt = self.field_alt(module, path, m, props.get(fname))
                if alt not in alts:
                    alts.append(alt)
            fields[fname] = {"presence": presence, "nullable": nullable, "alts": alts}
        self.defs[key] = {"kind": "object", "fields": fields}
        return key

    @cache
    def payment_method_types(self) -> frozenset[str]:
        """PaymentMethod.type's values: the names of the per-type hashes (`card`, `sepa_debit` …)."""
        cls = self.src.cls("stripe._payment_method", "PaymentMethod")
        stmt = next(s for s in cls.body if isinstance(s, ast.AnnAssign) and _name(s.target) == "type")
        return frozenset(a.value for m in union_members(stmt.annotation)
                         if isinstance(m, ast.Subscript) and _name(m.value) == "Literal" for a in _args(m))

    def field_alt(self, module: str, path: str, node: ast.expr, spec: Any) -> dict[str, Any]:
        node = expr(node)
        name = _name(node) if not isinstance(node, ast.Subscript) else _name(node.value)
        if name in SCALARS:
            return {"k": SCALARS[name]}
        if name == "Any":
            return {"k": "any"}
        if isinstance(node, ast.Subscript) and name == "Literal":
            values = [a.value for a in _args(node)]
            return {"k": "enum", "values": values}
        if isinstance(node, ast.Subscript) and name == "Union":
            raise AssertionError("unions are flattened before")
        if isinstance(node, ast.Subscript) and name == "List":
            items = next((m.get("items") for m in self.spec.members(spec) if m.get("type") == "array"), None) \
                if spec is not None else None
            inner = union_members(_args(node)[0])
            return {"k": "array", "items": [self.field_alt(module, path, m, items) for m in inner]}
        if isinstance(node, ast.Subscript) and name in ("Dict", "UntypedStripeObject"):
            inner = union_members(_args(node)[-1])
            return {"k": "map", "values": [self.field_alt(module, path, m, None) for m in inner]}
        if isinstance(node, ast.Subscript) and name == "ListObject":
            data = None
            if spec is not None:
                obj = self.spec.object_member(spec)
                data = ((obj or {}).get("properties", {}).get("data") or {}).get("items")
            inner = union_members(_args(node)[0])
            return {"k": "list", "items": [self.field_alt(module, path, m, data) for m in inner]}
        if isinstance(node, ast.Subscript) and name == "ExpandableField":
            inner = union_members(_args(node)[0])
            return {"k": "expandable", "objects": [self.field_alt(module, path, m, None) for m in inner]}
        # A nested class of this one (or of an enclosing one), else another resource.
        scope = path.split(".")
        while scope:
            candidate = ".".join(scope + [name])
            try:
                self.src.cls(module, candidate)
            except StopIteration:
                scope.pop()
                continue
            spec_obj = self.spec.object_member(spec) if spec is not None else None
            return {"k": "object", "ref": self.object_def(module, candidate, spec_obj)}
        if name in self.src.imports(module):
            return self.resource_alt(module, ast.Name(name))
        raise AssertionError(f"unhandled field type {ast.unparse(node)} in {module}:{path}")


def dump(schema: dict[str, Any]) -> str:
    """JSON with one operation or definition per line: small, and a regeneration diffs line by line."""
    def line(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    out = ["{"]
    for key in sorted(schema):
        value = schema[key]
        if key in ("operations", "defs"):
            rows = [f" {line(k)}:{line(v)}" for k, v in sorted(value.items())]
            out.append(f"{line(key)}:{{\n" + ",\n".join(rows) + "\n},")
        else:
            out.append(f"{line(key)}:{line(value)},")
    out[-1] = out[-1].rstrip(",")
    return "\n".join(out) + "\n}\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.emulator.schema_gen", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, required=True, help="Stripe's OpenAPI spec3.json")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="only compare with the file; exit 1 if it differs")
    args = parser.parse_args(argv)
    schema = Generator(Source(stripe_root()), Spec3(args.spec)).generate()
    text = dump(schema)
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out.name} is {'up to date' if same else 'stale: regenerate it'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(schema['operations'])} operations, {len(schema['defs'])} definitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
