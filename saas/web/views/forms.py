"""Account forms (Flask-WTF: CSRF on every form)."""
from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

MIN_PASSWORD = 10
COMMON_PASSWORDS = {"password123", "1234567890", "qwertyuiop", "password1234", "letmein1234", "iloveyou12"}


def sendable_email(form, field) -> None:
    """An address our mail can carry in To and Reply-To. Not every mail server takes non-ASCII before
    the @ (SMTPUTF8), so that is refused with a clear message; an international domain is kept in its
    ASCII (punycode) form, which every server takes."""
    value = (field.data or "").strip()
    try:
        field.data = validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError:
        if any(ord(ch) > 127 for ch in value.rpartition("@")[0]):
            raise ValidationError("We can only send to addresses with plain letters, digits and . _ - before "
                                  "the @. Please use another address.") from None
        raise ValidationError("Invalid email address: enter one like name@example.com.") from None


def strong_password(form, field) -> None:
    """At least MIN_PASSWORD characters, not all one kind, not a well-known password."""
    value = field.data or ""
    if len(value) < MIN_PASSWORD:
        raise ValidationError(f"Use at least {MIN_PASSWORD} characters.")
    if value.lower() in COMMON_PASSWORDS or len(set(value)) < 4:
        raise ValidationError("This password is too easy to guess. Choose another.")
    if value.isdigit() or value.isalpha():
        raise ValidationError("Mix letters with digits or symbols.")


class SignupForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=320), sendable_email])
    password = PasswordField("Password", validators=[DataRequired(), strong_password])


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired(), strong_password])
    confirm = PasswordField("Repeat new password", validators=[EqualTo("password", "The passwords do not match.")])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=320)])


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), strong_password])
    confirm = PasswordField("Repeat new password", validators=[EqualTo("password", "The passwords do not match.")])
