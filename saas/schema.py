"""Import every model module so Base.metadata knows the whole schema (Alembic, tests)."""
import billing.models  # noqa: F401
import saas.core.models  # noqa: F401
import saas.core.outbox  # noqa: F401
import scheduled.models  # noqa: F401
from saas.core.db import Base

metadata = Base.metadata
