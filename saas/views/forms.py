"""Account forms (Flask-WTF: CSRF on every form)."""
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

MIN_PASSWORD = 10
COMMON_PASSWORDS = {"password123", "1234567890", "qwertyuiop", "password1234", "letmein1234", "iloveyou12"}


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
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=320)])
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
