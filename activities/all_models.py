"""Every table's model, imported in one place so `Base.metadata` is the whole schema (Alembic's
env and the schema drift test use it)."""

import activities.kyc_models
import activities.loan_book_models
import activities.loan_models
import activities.login_models
import activities.notification_models
import activities.reversal_models
import activities.savings_models  # noqa: F401
from activities.models import Base

__all__ = ["Base"]
