"""Herald's built-in plugins. Each module is one plugin, registered exactly like a third-party one."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.channels.sms",
    "plugins.channels.email",
    "plugins.channels.push",
    "plugins.channels.line",
    "plugins.channels.viber",
    "plugins.channels.wechat",
    "plugins.channels.whatsapp",
    "plugins.channels.call_task",
    "plugins.channels.ads",
    "plugins.incentives.coupon",
    "plugins.incentives.points",
    "plugins.optimizers.eligibility",
    "plugins.optimizers.personalization",
    "plugins.optimizers.channel_priority",
    "plugins.optimizers.control_group",
    "plugins.optimizers.frequency_cap",
    "plugins.optimizers.cost",
    "plugins.optimizers.quiet_hours",
)
