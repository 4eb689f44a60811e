"""The command modules, listed explicitly; see `smsbot.router` for the contract."""


def known_command_names() -> set[str]:
    return {"subscriptions", "help"}
