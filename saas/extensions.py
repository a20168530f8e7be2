"""Flask extensions, created unbound and initialised in the app factory."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"

csrf = CSRFProtect()

# Storage is set from REDIS_URL in create_app; no limits apply unless a view declares one.
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window")
