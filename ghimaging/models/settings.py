from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model


class Setting(Model):
    """Clinic settings that staff edit in the browser (clinic name, address).

    Deployment settings (database URL, paths) stay in config files and the
    environment; these are the ones that belong to the clinic, not the host.
    """

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
