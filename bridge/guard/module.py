"""The guard as a Synapse module: the pure policy wired to Synapse's public module API.

Which hook catches what (measured on Synapse 1.163):

- `check_event_allowed` (third-party rules) sees every event this homeserver creates,
  for ordinary users *and* server admins, room creation included. It is the backstop.
  A refusal is raised as `SynapseError(403, reason, M_FORBIDDEN)`: Synapse passes the
  error through, so the client gets our reason in the `error` field (returning False
  would give the fixed text "This event is not allowed in this context").
- `on_create_room` (third-party rules, admins included) judges a /createRoom body
  before the room exists, and adds Megolm encryption and "no guests" when missing.
- `check_event_for_spam` is the only hook that sees ordinary events arriving over
  federation (Synapse calls `check_event_allowed` for federated knocks only). A
  refused remote event is soft-failed and redacted: local users never see it and it
  never becomes room state. Locally it runs after `check_event_allowed`.
- `federated_user_may_invite`: invitations from other servers to our users.
- Spam-checker callbacks for users (`user_may_invite`, `user_may_join_room`,
  `user_may_create_room_alias`, `user_may_publish_room`,
  `user_may_send_3pid_invite`) give early, clear refusals; Synapse skips them for
  server admins, which is why the same rules sit in the hooks above. Their refusal
  is `(M_FORBIDDEN, {"error": reason, ...})`: Synapse merges that dict into the error
  body after its fixed message, so `error` carries our reason.
- `check_visibility_can_be_modified` and `check_threepid_can_be_invited` (everyone)
  only answer yes/no, and Synapse ignores exceptions there: they return False.
- `check_media_file_for_spam` (everyone, admins included) sees every file before it
  enters the media store: local uploads (`/_matrix/media/{v1,v3,r0}/upload` and the
  asynchronous `PUT /_matrix/media/v3/upload/{server}/{id}`), media fetched from other
  servers, and the thumbnails Synapse makes. Only ciphertext-shaped files and small
  plain pictures pass (`bridge.guard.media`). Synapse drops our reason there: an upload
  is answered `400 "Bad content"`, a refused remote file `404`.
- `user_may_send_state_event` is not used: it only accepts a bare error code, which
  would hide the reason, and `check_event_allowed` refuses the same state for everyone.

Every callback fails closed: an unexpected error refuses and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from synapse.module_api import NOT_SPAM, EventBase, ModuleApi, Requester, RoomAlias, StateMap
from synapse.module_api.errors import Codes, SynapseError

from bridge.guard import creation, media, policy
from bridge.guard.allowlist import AllowList, AllowListHolder
from bridge.guard.config import GuardConfig, parse_config
from bridge.guard.outsiders import FederationWhitelist
from bridge.guard.policy import EventFacts, Refusal
from bridge.guard.refresh import AllowListRefresher
from bridge.guard.refusals import MEDIA_IN_CLEAR

logger = logging.getLogger(__name__)

# Extra field in error bodies: the stable id of the rule that refused.
RULE_FIELD = "fr.caducee.guard.rule"

SpamResult = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]

_INTERNAL = Refusal(
    "guard_error",
    "The federation's guard could not check this request; it was refused to be safe. "
    "Please tell your administrator.",
    "Le garde de la fédération n'a pas pu vérifier cette demande ; elle a été refusée par "
    "précaution. Prévenez votre administrateur.",
)


class MediaFile(Protocol):
    """What Synapse hands the media check (`ReadableFileWrapper`, not in the module API)."""

    async def write_chunks_to(self, callback: Callable[[bytes], object]) -> None: ...


def facts_of(event: EventBase) -> EventFacts:
    return EventFacts(event.type, event.sender, event.content, event.get_state_key())


def error_body(refusal: Refusal) -> dict[str, Any]:
    return {"error": refusal.message, RULE_FIELD: refusal.rule}


def _spam_answer(refusal: Refusal | None) -> SpamResult:
    return NOT_SPAM if refusal is None else (Codes.FORBIDDEN, error_body(refusal))


class CaduceeGuard:
    """Enforces the medical federation's room policy on this homeserver."""

    def __init__(self, config: GuardConfig, api: ModuleApi) -> None:
        self._api = api
        self._config = config
        self.allow_list = AllowListHolder(AllowList.build(api.server_name, config.allowed_servers))
        self._extra = config.identifier_patterns
        # No path to or from outsiders, on any channel: Synapse's whitelist follows the list.
        self.allow_list.subscribe(FederationWhitelist.bind(api).apply)
        self.refresher: AllowListRefresher | None = None
        if config.allowed_servers_url is not None:
            self.refresher = AllowListRefresher(
                api, self.allow_list, config.allowed_servers_url, config.refresh_seconds
            )
            self.refresher.start()
        api.register_spam_checker_callbacks(
            check_event_for_spam=self.check_event_for_spam,
            check_media_file_for_spam=self.check_media_file_for_spam,
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_join_room=self.user_may_join_room,
            user_may_create_room_alias=self.user_may_create_room_alias,
            user_may_publish_room=self.user_may_publish_room,
            user_may_send_3pid_invite=self.user_may_send_3pid_invite,
        )
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed,
            on_create_room=self.on_create_room,
            check_visibility_can_be_modified=self.check_visibility_can_be_modified,
            check_threepid_can_be_invited=self.check_threepid_can_be_invited,
        )
        logger.info(
            "Caducée guard active on %s; allowed servers: %s",
            api.server_name,
            sorted(self.allow_list.current.servers),
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> GuardConfig:
        return parse_config(config)

    def _decide(
        self, what: str, where: str, decide: Callable[[AllowList], Refusal | None]
    ) -> Refusal | None:
        """Run one decision against the current allow-list; fail closed and log refusals."""
        try:
            refusal = decide(self.allow_list.current)
        except Exception:
            logger.exception("Guard failed while checking %s in %s; refusing", what, where)
            return _INTERNAL
        if refusal is not None:
            logger.info("Guard refused %s in %s: %s", what, where, refusal.rule)
        return refusal

    # Third-party rules: everyone, admins included.

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        facts = facts_of(event)
        refusal = self._decide(
            f"{event.type} from {event.sender}",
            event.room_id,
            lambda allow: policy.check_event_in_room(
                facts, policy.room_facts(map(facts_of, state_events.values())), allow, self._extra
            ),
        )
        if refusal is not None:
            raise SynapseError(403, refusal.message, Codes.FORBIDDEN, {RULE_FIELD: refusal.rule})
        return True, None

    async def on_create_room(
        self, requester: Requester, request_content: dict[str, Any], is_requester_admin: bool
    ) -> None:
        creator = requester.user.to_string()
        refusal = self._decide(
            f"room creation by {creator}",
            "a new room",
            lambda allow: creation.check_room_creation(
                request_content, creator, allow, self._extra
            ),
        )
        if refusal is not None:
            raise SynapseError(403, refusal.message, Codes.FORBIDDEN, {RULE_FIELD: refusal.rule})
        additions = creation.secure_initial_state(request_content)
        if additions:
            request_content["initial_state"] = [
                *request_content.get("initial_state", []),
                *additions,
            ]

    async def check_visibility_can_be_modified(
        self, room_id: str, state_events: StateMap[EventBase], new_visibility: str
    ) -> bool:
        if new_visibility != "public":
            return True
        logger.info("Guard refused publishing %s in the room directory", room_id)
        return False

    async def check_threepid_can_be_invited(
        self, medium: str, address: str, state_events: StateMap[EventBase]
    ) -> bool:
        logger.info("Guard refused a third-party (%s) invitation", medium)
        return False

    # Spam-checker callbacks: events from federation, and early answers for users.

    async def check_event_for_spam(self, event: EventBase) -> SpamResult:
        facts = facts_of(event)
        return _spam_answer(
            self._decide(
                f"{event.type} from {event.sender}",
                event.room_id,
                lambda allow: policy.check_event(facts, allow, self._extra),
            )
        )

    async def check_media_file_for_spam(self, file: MediaFile, file_info: Any) -> SpamResult:
        """Only ciphertext and small plain pictures enter the media store (see `media`).

        `file_info` is Synapse's `FileInfo` (`server_name` None for a local upload).
        """
        where = getattr(file_info, "server_name", None) or "this server"
        what = "a thumbnail" if getattr(file_info, "thumbnail", None) else "a file"
        try:
            content = bytearray()
            await file.write_chunks_to(content.extend)
            reason = await self._api.defer_to_thread(media.judge, bytes(content))
        except Exception:
            logger.exception("Guard failed while checking %s from %s; refusing", what, where)
            return _spam_answer(_INTERNAL)
        if reason is None:
            return NOT_SPAM
        logger.info(
            "Guard refused %s from %s (%d bytes): %s: %s",
            what,
            where,
            len(content),
            MEDIA_IN_CLEAR.rule,
            reason,
        )
        return _spam_answer(MEDIA_IN_CLEAR)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> SpamResult:
        return _spam_answer(
            self._decide(
                f"invitation of {invitee} by {inviter}",
                room_id,
                lambda allow: policy.check_invite(inviter, invitee, allow),
            )
        )

    async def federated_user_may_invite(self, event: EventBase) -> SpamResult:
        facts = facts_of(event)
        return _spam_answer(
            self._decide(
                f"invitation from {event.sender}",
                event.room_id,
                lambda allow: (
                    policy.check_invite(event.sender, event.state_key, allow)
                    or policy.check_event(facts, allow, self._extra)
                ),
            )
        )

    async def user_may_join_room(self, user: str, room: str, is_invited: bool) -> SpamResult:
        return _spam_answer(
            self._decide(
                f"join by {user}", room, lambda allow: policy.check_join(user, room, allow)
            )
        )

    async def user_may_create_room_alias(self, user_id: str, room_alias: RoomAlias) -> SpamResult:
        alias = room_alias.to_string()
        return _spam_answer(
            self._decide(
                f"alias creation by {user_id}",
                "the room directory",
                lambda allow: policy.check_alias(alias, self._extra),
            )
        )

    async def user_may_publish_room(self, user_id: str, room_id: str) -> SpamResult:
        logger.info("Guard refused publishing %s in the room directory for %s", room_id, user_id)
        return _spam_answer(policy.PUBLISHED)

    async def user_may_send_3pid_invite(
        self, inviter: str, medium: str, address: str, room_id: str
    ) -> SpamResult:
        logger.info("Guard refused a third-party (%s) invitation in %s", medium, room_id)
        return _spam_answer(policy.THIRD_PARTY_INVITE)
