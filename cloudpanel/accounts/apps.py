from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "cloudpanel.accounts"
    label = "accounts"
