// One logged-in Element-like session: a matrix-js-sdk client with Rust crypto, in the
// isolation mode a security-conscious Element uses ("exclude insecure devices").

import * as sdk from "matrix-js-sdk";
import {
    AllDevicesIsolationMode,
    OnlySignedDevicesIsolationMode,
} from "matrix-js-sdk/lib/crypto-api/index.js";

import { FINAL_FAILURES, describeEvent, isDecrypted, isPending } from "./events.mjs";
import { Changes, ProtocolError, deadlineFrom, requireString, withTimeout } from "./wait.mjs";

const MEGOLM = "m.megolm.v1.aes-sha2";
const DEFAULT_TIMEOUT_MS = 30_000;

export class Session {
    constructor(logs) {
        this.logs = logs;
        this.client = null;
        this.password = null;
        this.changes = new Changes();
        /** Live message events from others, oldest first, with their decryption failure codes. */
        this.received = [];
        this.failureCodes = new Map();
        this.consumed = new Set();
        this.withheldSent = [];
        this.withheldReceived = [];
    }

    requireClient() {
        if (!this.client) throw new ProtocolError("NOT_LOGGED_IN", "run login first");
        return this.client;
    }

    get crypto() {
        const crypto = this.requireClient().getCrypto();
        if (!crypto) throw new ProtocolError("NO_CRYPTO", "the client has no crypto");
        return crypto;
    }

    get userId() {
        return this.client.getSafeUserId();
    }

    /**
     * Logs in (password, or a given access token + device id), starts the Rust crypto in
     * memory, sets the isolation mode and waits for the first sync.
     */
    async login(req) {
        if (this.client) throw new ProtocolError("ALREADY_LOGGED_IN", "this process already has a session");
        const baseUrl = requireString(req, "homeserver_url");
        const userId = requireString(req, "user_id");
        const timeoutMs = req.timeout_ms ?? DEFAULT_TIMEOUT_MS;
        this.password = req.password ?? null;
        let accessToken = req.access_token ?? null;
        let deviceId = req.device_id ?? null;
        if (accessToken === null) {
            if (this.password === null) throw new ProtocolError("BAD_REQUEST", "login needs password or access_token");
            const bare = sdk.createClient({ baseUrl, fetchFn: this.fetchFn() });
            const creds = await withTimeout(
                bare.loginRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: userId },
                    password: this.password,
                    initial_device_display_name: req.device_name ?? "Caducée Element test client",
                }),
                timeoutMs,
                "password login",
            );
            accessToken = creds.access_token;
            deviceId = creds.device_id;
        } else if (deviceId === null) {
            throw new ProtocolError("BAD_REQUEST", "access_token needs device_id");
        }
        this.client = sdk.createClient({
            baseUrl,
            userId,
            accessToken,
            deviceId,
            fetchFn: this.fetchFn(),
            localTimeoutMs: 60_000,
        });
        await this.client.initRustCrypto({ useIndexedDB: false });
        const isolation = req.isolation ?? "only_signed";
        if (isolation === "only_signed") {
            this.crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
        } else if (isolation === "all") {
            this.crypto.setDeviceIsolationMode(new AllDevicesIsolationMode(false));
        } else {
            throw new ProtocolError("BAD_REQUEST", `isolation must be "only_signed" or "all", not ${JSON.stringify(isolation)}`);
        }
        this.listen();
        const prepared = new Promise((resolve, reject) => {
            const onSync = (state) => {
                if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
                    this.client.off(sdk.ClientEvent.Sync, onSync);
                    resolve();
                } else if (state === sdk.SyncState.Error) {
                    this.client.off(sdk.ClientEvent.Sync, onSync);
                    reject(new ProtocolError("SYNC_FAILED", "first sync failed"));
                }
            };
            this.client.on(sdk.ClientEvent.Sync, onSync);
        });
        await this.client.startClient({ initialSyncLimit: 10 });
        await withTimeout(prepared, timeoutMs, "first sync");
        return { user_id: userId, device_id: deviceId, isolation };
    }

    /** A fetch that notes every `m.room_key.withheld` this device sends, then forwards. */
    fetchFn() {
        return async (input, init) => {
            const url = typeof input === "string" ? input : input.toString();
            if (init?.method === "PUT" && url.includes("/sendToDevice/m.room_key.withheld/")) {
                this.noteWithheldSent(init.body);
            }
            return fetch(input, init);
        };
    }

    noteWithheldSent(body) {
        let messages;
        try {
            messages = JSON.parse(body).messages ?? {};
        } catch {
            return;
        }
        for (const [userId, devices] of Object.entries(messages)) {
            for (const [deviceId, content] of Object.entries(devices)) {
                this.withheldSent.push({
                    user_id: userId,
                    device_id: deviceId,
                    code: content.code ?? null,
                    room_id: content.room_id ?? null,
                });
            }
        }
    }

    listen() {
        const client = this.client;
        const wake = () => this.changes.notify();
        for (const name of [sdk.ClientEvent.Sync, sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership]) {
            client.on(name, wake);
        }
        client.on(sdk.RoomEvent.Timeline, (ev, room, toStartOfTimeline, removed, data) => {
            if (!toStartOfTimeline && data?.liveEvent && ev.getSender() !== this.userId) {
                const type = ev.getWireType();
                if ((type === "m.room.encrypted" || type === "m.room.message") && !ev.isState()) {
                    this.received.push(ev);
                }
            }
            wake();
        });
        client.on(sdk.MatrixEventEvent.Decrypted, (ev) => {
            const code = ev.decryptionFailureReason;
            if (code) {
                const seen = this.failureCodes.get(ev.getId()) ?? new Set();
                seen.add(code);
                this.failureCodes.set(ev.getId(), seen);
            }
            wake();
        });
        client.on(sdk.ClientEvent.ToDeviceEvent, (ev) => {
            if (ev.getType() === "m.room_key.withheld") {
                const c = ev.getContent();
                this.withheldReceived.push({ sender: ev.getSender(), code: c.code ?? null, room_id: c.room_id ?? null });
            }
            wake();
        });
    }

    /**
     * Creates this user's cross-signing keys and signs this device with them (Element does
     * this on first login); answers the user-interactive auth with the password.
     */
    async crossSign(req) {
        const password = req.password ?? this.password;
        if (!password) throw new ProtocolError("BAD_REQUEST", "cross_sign needs the account password");
        const crypto = this.crypto;
        const user = this.userId;
        await withTimeout(
            crypto.bootstrapCrossSigning({
                setupNewCrossSigning: Boolean(req.reset),
                authUploadDeviceSigningKeys: async (makeRequest) => {
                    await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user }, password });
                },
            }),
            req.timeout_ms ?? DEFAULT_TIMEOUT_MS,
            "cross-signing bootstrap",
        );
        // The server must publish the device's signature (a rejected signature still gets a
        // 200 from keys/signatures/upload), and this device must see itself as signed.
        const deadline = deadlineFrom(req.timeout_ms);
        for (;;) {
            const status = await this.status();
            const done = status.cross_signing_ready && status.device_signed_on_server && status.device_signed_by_owner;
            if (done) return status;
            if (Date.now() >= deadline) {
                throw new ProtocolError("CROSS_SIGNING_FAILED", `cross-signing incomplete: ${JSON.stringify(status)}`);
            }
            await this.changes.next(250);
        }
    }

    /** What this device knows of its own trust, and what the server publishes about it. */
    async status() {
        const crypto = this.crypto;
        const me = this.userId;
        const deviceId = this.client.getDeviceId();
        const own = await crypto.getDeviceVerificationStatus(me, deviceId);
        const keys = await this.client.downloadKeysForUsers([me]);
        const sskKeys = Object.keys(keys.self_signing_keys?.[me]?.keys ?? {});
        const signatures = Object.keys(keys.device_keys?.[me]?.[deviceId]?.signatures?.[me] ?? {});
        return {
            user_id: me,
            device_id: deviceId,
            cross_signing_ready: await crypto.isCrossSigningReady(),
            master_key: await crypto.getCrossSigningKeyId(),
            device_signed_by_owner: own?.signedByOwner ?? false,
            device_signed_on_server: sskKeys.some((keyId) => signatures.includes(keyId)),
        };
    }

    /** Creates an encrypted direct chat with `user_id`, the way Element does. */
    async createDm(req) {
        const other = requireString(req, "user_id");
        return this.createRoom({ ...req, invite: [other], direct: true });
    }

    /**
     * Creates an encrypted private room inviting `invite` (a direct chat when `direct`, with
     * Element's m.direct bookkeeping) and, unless `wait_join` is false, waits for all to join.
     */
    async createRoom(req) {
        const invite = req.invite ?? [];
        if (!Array.isArray(invite) || invite.some((u) => typeof u !== "string")) {
            throw new ProtocolError("BAD_REQUEST", "invite must be a list of user ids");
        }
        const direct = req.direct === true;
        if (direct && invite.length !== 1) throw new ProtocolError("BAD_REQUEST", "a direct chat has one invitee");
        const deadline = deadlineFrom(req.timeout_ms);
        const { room_id: roomId } = await this.client.createRoom({
            is_direct: direct,
            invite,
            preset: sdk.Preset.TrustedPrivateChat,
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
        });
        if (direct) {
            const content = this.client.getAccountData("m.direct")?.getContent() ?? {};
            content[invite[0]] = [...(content[invite[0]] ?? []), roomId];
            await this.client.setAccountData("m.direct", content);
        }
        await this.changes.until(deadline, "the new room to sync", () => this.client.getRoom(roomId)?.getMyMembership() === "join");
        if (req.wait_join !== false) {
            for (const userId of invite) await this.waitForJoin({ room_id: roomId, user_id: userId, deadline });
        }
        return { room_id: roomId, encrypted: await this.crypto.isEncryptionEnabledInRoom(roomId) };
    }

    /** Waits for an invite (optionally from a given user) and returns its room. */
    async waitForInvite(req) {
        const from = req.from ?? null;
        const roomId = await this.changes.until(deadlineFrom(req.timeout_ms), "an invite", () => {
            for (const room of this.client.getRooms()) {
                if (room.getMyMembership() !== "invite") continue;
                const inviter = room.getMember(this.userId)?.events.member?.getSender();
                if (from === null || inviter === from) return room.roomId;
            }
            return undefined;
        });
        return { room_id: roomId };
    }

    async join(req) {
        const roomId = requireString(req, "room_id");
        const deadline = deadlineFrom(req.timeout_ms);
        await withTimeout(this.client.joinRoom(roomId), deadline - Date.now(), "join");
        await this.changes.until(deadline, "the join to sync", () => this.client.getRoom(roomId)?.getMyMembership() === "join");
        return { room_id: roomId, encrypted: await this.crypto.isEncryptionEnabledInRoom(roomId) };
    }

    async waitForJoin(req) {
        const roomId = requireString(req, "room_id");
        const userId = requireString(req, "user_id");
        const deadline = req.deadline ?? deadlineFrom(req.timeout_ms);
        await this.changes.until(deadline, `${userId} to join`, () => this.client.getRoom(roomId)?.getMember(userId)?.membership === "join");
        return { room_id: roomId, user_id: userId };
    }

    /** Sends a message; refuses to send in clear unless `allow_unencrypted` is set. */
    async send(req) {
        const roomId = requireString(req, "room_id");
        const body = requireString(req, "body");
        if (req.allow_unencrypted !== true && !(await this.crypto.isEncryptionEnabledInRoom(roomId))) {
            throw new ProtocolError("NOT_ENCRYPTED", "room is not encrypted (or not synced yet)");
        }
        const content = { msgtype: req.msgtype ?? "m.text", body };
        const { event_id: eventId } = await withTimeout(
            this.client.sendMessage(roomId, content),
            req.timeout_ms ?? DEFAULT_TIMEOUT_MS,
            "send",
        );
        return { event_id: eventId };
    }

    /**
     * Waits for the next message from others (filtered by room and sender) and for its
     * decryption to end: success, a final refusal, or `utd_wait_ms` after the first failure.
     */
    async waitForMessage(req) {
        const deadline = deadlineFrom(req.timeout_ms);
        const matches = (ev) =>
            !this.consumed.has(ev.getId()) &&
            (req.room_id === undefined || ev.getRoomId() === req.room_id) &&
            (req.sender === undefined || ev.getSender() === req.sender);
        const ev = await this.changes.until(deadline, "a message", () => this.received.find(matches));
        this.consumed.add(ev.getId());
        const utdDeadline = Math.min(deadline, Date.now() + (req.utd_wait_ms ?? 10_000));
        await this.changes.until(
            utdDeadline,
            "decryption",
            () => isDecrypted(ev) || FINAL_FAILURES.has(ev.decryptionFailureReason) || undefined,
            { orTimeout: true },
        );
        if (isPending(ev)) {
            await withTimeout(ev.getDecryptionPromise() ?? Promise.resolve(), Math.max(deadline - Date.now(), 1), "decryption");
        }
        return describeEvent(this.crypto, ev, this.failureCodes.get(ev.getId()));
    }

    async encryptionInfo(req) {
        const roomId = requireString(req, "room_id");
        const eventId = requireString(req, "event_id");
        const ev = this.client.getRoom(roomId)?.findEventById(eventId);
        if (!ev) throw new ProtocolError("NOT_FOUND", "event not in this client's timeline");
        return describeEvent(this.crypto, ev, this.failureCodes.get(eventId));
    }

    withheld() {
        return { sent: this.withheldSent, received: this.withheldReceived };
    }

    async stop() {
        if (this.client) {
            this.client.stopClient();
            this.client = null;
        }
    }
}
