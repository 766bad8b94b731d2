"""The roles a user may have. Below config, credentials and auth, which all name them."""

ADMIN = "admin"
USER = "user"
ROLES = (ADMIN, USER)
