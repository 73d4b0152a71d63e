"""What a change does outside the database follows the fate of the
transaction that made it, whichever boundary commits (a page, the API, a
CLI command, a background step).

Files written for a change (a worklist file, a report image) are written
before the commit, so nothing is ever stored without them; they are removed
again if the transaction rolls back or closes without a commit. What must
only happen to stored data (telling the worklist files and GNU Health that
a request changed, deleting the images a saved edit removed) runs once the
transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from ..extensions import db

Effect = Callable[[], None]
_UNDO = "ghimaging.effects.undo"  # run unless the open transaction commits
_AFTER = "ghimaging.effects.after"  # run once it has committed
_READY = "ghimaging.effects.ready"  # committed, to run when the transaction has ended


def undo_unless_committed(fn: Effect) -> None:
    db.session.info.setdefault(_UNDO, []).append(fn)


def after_commit(fn: Effect) -> None:
    db.session.info.setdefault(_AFTER, []).append(fn)


def _committed(session: Session) -> None:
    session.info.pop(_UNDO, None)
    session.info.setdefault(_READY, []).extend(session.info.pop(_AFTER, []))


def _ended(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended. After a commit the waiting effects
    run; they may read and write in a transaction of their own (the
    committed one takes no more SQL). Otherwise the files are undone."""
    if transaction.parent is not None:
        return
    session.info.pop(_AFTER, None)
    undo: list[Effect] = session.info.pop(_UNDO, [])
    ready: list[Effect] = session.info.pop(_READY, [])
    for fn in reversed(undo):
        fn()
    for fn in ready:
        fn()


def listen() -> None:
    """Hook the two steps above to every Flask-SQLAlchemy session (once)."""
    from flask_sqlalchemy.session import Session as FlaskSession

    if not event.contains(FlaskSession, "after_commit", _committed):
        event.listen(FlaskSession, "after_commit", _committed)
    if not event.contains(FlaskSession, "after_transaction_end", _ended):
        event.listen(FlaskSession, "after_transaction_end", _ended)
