// Element's everyday features as Element's SDK sends them: any event (replies, edits,
// threads, reactions are plain contents the SDK encrypts or not, as Element does), state
// (pins, avatar), redactions, read receipts and media, plus what another member then sees.

import { EventTimeline } from "matrix-js-sdk";

import { deadlineFrom, ProtocolError, requireString, withTimeout } from "./wait.mjs";
import { isDecrypted, isPending } from "./events.mjs";

const DEFAULT_TIMEOUT_MS = 30_000;

function requireObject(req, field) {
    const value = req[field];
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new ProtocolError("BAD_REQUEST", `missing or non-object field "${field}"`);
    }
    return value;
}

function ms(req) {
    return req.timeout_ms ?? DEFAULT_TIMEOUT_MS;
}

/** Sends an event as Element would (the SDK decides what it encrypts); returns its id. */
export async function sendEvent(session, req) {
    const roomId = requireString(req, "room_id");
    const type = requireString(req, "type");
    const content = requireObject(req, "content");
    if (!(await session.crypto.isEncryptionEnabledInRoom(roomId))) {
        throw new ProtocolError("NOT_ENCRYPTED", "room is not encrypted (or not synced yet)");
    }
    const threadId = typeof req.thread_id === "string" ? req.thread_id : null;
    const { event_id: eventId } = await withTimeout(
        session.client.sendEvent(roomId, threadId, type, content),
        ms(req),
        "send_event",
    );
    return { event_id: eventId };
}

export async function sendState(session, req) {
    const roomId = requireString(req, "room_id");
    const type = requireString(req, "type");
    const content = requireObject(req, "content");
    const stateKey = typeof req.state_key === "string" ? req.state_key : "";
    const { event_id: eventId } = await withTimeout(
        session.client.sendStateEvent(roomId, type, content, stateKey),
        ms(req),
        "send_state",
    );
    return { event_id: eventId };
}

export async function redact(session, req) {
    const roomId = requireString(req, "room_id");
    const eventId = requireString(req, "event_id");
    const opts = typeof req.reason === "string" ? { reason: req.reason } : undefined;
    const { event_id: redactionId } = await withTimeout(
        session.client.redactEvent(roomId, eventId, undefined, opts),
        ms(req),
        "redact",
    );
    return { event_id: redactionId };
}

/** Marks an event read, as Element does when it is on screen (a public read receipt). */
export async function readReceipt(session, req) {
    const ev = await findEvent(session, req);
    await withTimeout(session.client.sendReadReceipt(ev), ms(req), "read_receipt");
    return { event_id: ev.getId() };
}

/** Uploads bytes (base64) to the media repository; returns the mxc URL. */
export async function upload(session, req) {
    const data = Buffer.from(requireString(req, "base64"), "base64");
    const type = requireString(req, "content_type");
    const { content_uri: uri } = await withTimeout(
        session.client.uploadContent(data, { type, includeFilename: false }),
        ms(req),
        "upload",
    );
    return { content_uri: uri };
}

async function findEvent(session, req) {
    const roomId = requireString(req, "room_id");
    const eventId = requireString(req, "event_id");
    const deadline = deadlineFrom(req.timeout_ms);
    return session.changes.until(deadline, `event ${eventId}`, () => {
        const room = session.client.getRoom(roomId);
        return room?.findEventById(eventId) ?? room?.getThread?.(eventId)?.rootEvent ?? undefined;
    });
}

/**
 * Waits until this client holds the event and has decrypted it (and, with `redacted`,
 * until it is redacted); returns what Element shows (type, content, thread, relation) and what travelled (wire type and content).
 */
export async function seeEvent(session, req) {
    const deadline = deadlineFrom(req.timeout_ms);
    const roomId = requireString(req, "room_id");
    const eventId = requireString(req, "event_id");
    const ev = await session.changes.until(deadline, `event ${eventId}`, () => {
        const room = session.client.getRoom(roomId);
        if (!room) return undefined;
        const found = room.findEventById(eventId) ?? findInThreads(room, eventId);
        if (!found || isPending(found)) return undefined;
        if (req.redacted === true && !found.isRedacted()) return undefined;
        return found;
    });
    return {
        event_id: ev.getId(),
        type: ev.getType(),
        content: ev.getContent(),
        wire_type: ev.getWireType(),
        wire_content: ev.getWireContent(),
        decrypted: isDecrypted(ev),
        redacted: ev.isRedacted(),
        thread_root: ev.threadRootId ?? null,
        replacing: ev.replacingEventId() ?? null,
    };
}

function findInThreads(room, eventId) {
    for (const thread of room.getThreads()) {
        const found = thread.findEventById(eventId);
        if (found) return found;
    }
    return undefined;
}

/** Waits until the room state seen by this client has `predicate`-matching content. */
export async function seeState(session, req) {
    const roomId = requireString(req, "room_id");
    const type = requireString(req, "type");
    const stateKey = typeof req.state_key === "string" ? req.state_key : "";
    const expected = requireObject(req, "content");
    const deadline = deadlineFrom(req.timeout_ms);
    let last = null;
    try {
        await session.changes.until(deadline, `state ${type}`, () => {
            const room = session.client.getRoom(roomId);
            const state = room?.getLiveTimeline().getState(EventTimeline.FORWARDS);
            last = state?.getStateEvents(type, stateKey)?.getContent() ?? null;
            return last && sameJson(last, expected) ? true : undefined;
        });
    } catch (err) {
        throw new ProtocolError(err.code ?? "TIMEOUT", `${err.message}; last seen: ${JSON.stringify(last)}`);
    }
    return { content: last };
}

/** Waits until `user_id`'s read receipt in the room points at `event_id`. */
export async function seeReceipt(session, req) {
    const roomId = requireString(req, "room_id");
    const userId = requireString(req, "user_id");
    const eventId = requireString(req, "event_id");
    const deadline = deadlineFrom(req.timeout_ms);
    await session.changes.until(deadline, `receipt of ${userId}`, () =>
        session.client.getRoom(roomId)?.getEventReadUpTo(userId) === eventId ? true : undefined,
    );
    return { event_id: eventId };
}

function sameJson(a, b) {
    const canonical = (v) =>
        Array.isArray(v)
            ? v.map(canonical)
            : v && typeof v === "object"
              ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
              : v;
    return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}
