from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"
    verbose_name = "Notifications, forwarding and recordings"

    def ready(self) -> None:
        from notifications import checks, signals  # noqa: F401 - registers checks and receivers
