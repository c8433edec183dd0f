from django.apps import AppConfig


class LoopsConfig(AppConfig):
    name = "loops"
    verbose_name = "A2I human loops"

    def ready(self):
        from loops import signals

        signals.connect()
