"""Import every model module so Base.metadata knows the whole schema (Alembic, tests)."""
import billing.models  # noqa: F401
import saas.models  # noqa: F401
import saas.outbox  # noqa: F401
import scheduled.models  # noqa: F401
from saas.db import Base

metadata = Base.metadata
