// Element-compatible Matrix test client, driven by pytest over a line-oriented JSON protocol.
//
// It uses the same crypto stack as Element (matrix-js-sdk with its Rust crypto), so the tests
// can prove what a doctor's Element sees when talking to the Caducée bot: whether room keys
// flow, whether replies decrypt, and which shield Element would draw next to them.
//
// Protocol: one JSON object per line on stdin, {"id": N, "cmd": "...", ...args}; one JSON
// object per line on stdout, {"id": N, "ok": true, "result": {...}} or
// {"id": N, "ok": false, "error": "...", "code": "..."}. Every command that waits takes
// `timeout_ms`. Diagnostics (including the SDK's own logging) go to stderr only, so stdout
// carries nothing but protocol lines. Passwords, tokens and message bodies are never logged.

import { createInterface } from "node:readline";
import process from "node:process";

import { Logs } from "./lib/logs.mjs";
import * as features from "./lib/features.mjs";
import { Session } from "./lib/session.mjs";

const logs = new Logs(process.env.ELEMENT_CLIENT_LOG ?? "warn");
logs.install();

const session = new Session(logs);

/** Command table: each handler takes the request object and returns a JSON-able result. */
const COMMANDS = {
    login: (req) => session.login(req),
    cross_sign: (req) => session.crossSign(req),
    status: () => session.status(),
    create_dm: (req) => session.createDm(req),
    create_room: (req) => session.createRoom(req),
    wait_for_invite: (req) => session.waitForInvite(req),
    join: (req) => session.join(req),
    wait_for_join: (req) => session.waitForJoin(req),
    send: (req) => session.send(req),
    wait_for_message: (req) => session.waitForMessage(req),
    encryption_info: (req) => session.encryptionInfo(req),
    withheld: () => session.withheld(),
    send_event: (req) => features.sendEvent(session, req),
    send_state: (req) => features.sendState(session, req),
    redact: (req) => features.redact(session, req),
    read_receipt: (req) => features.readReceipt(session, req),
    upload: (req) => features.upload(session, req),
    see_event: (req) => features.seeEvent(session, req),
    see_state: (req) => features.seeState(session, req),
    see_receipt: (req) => features.seeReceipt(session, req),
    quit: async () => {
        await session.stop();
        return { bye: true };
    },
};

/** Commands that make sense before login. */
const SESSIONLESS = new Set(["login", "quit"]);

function reply(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

async function handleLine(line) {
    let req;
    try {
        req = JSON.parse(line);
    } catch {
        reply({ id: null, ok: false, code: "BAD_JSON", error: "request is not valid JSON" });
        return;
    }
    if (typeof req !== "object" || req === null || Array.isArray(req)) {
        reply({ id: null, ok: false, code: "BAD_REQUEST", error: "request must be a JSON object" });
        return;
    }
    const id = req.id ?? null;
    const handler = Object.hasOwn(COMMANDS, req.cmd) ? COMMANDS[req.cmd] : undefined;
    if (handler === undefined) {
        const known = Object.keys(COMMANDS).join(", ");
        reply({ id, ok: false, code: "UNKNOWN_COMMAND", error: `unknown command ${JSON.stringify(req.cmd)}; known: ${known}` });
        return;
    }
    try {
        if (!SESSIONLESS.has(req.cmd)) session.requireClient();
        const result = await handler(req);
        reply({ id, ok: true, result });
    } catch (err) {
        const code = err?.code ?? err?.errcode ?? err?.name ?? "ERROR";
        logs.error(`command ${req.cmd} failed: ${code}`);
        reply({ id, ok: false, code: String(code), error: String(err?.message ?? err) });
    }
    if (req.cmd === "quit") {
        process.exit(0);
    }
}

// Commands run one at a time, in order: the driver is sequential and ordering keeps the
// protocol trivially correct (a reply always answers the oldest pending request).
let queue = Promise.resolve();
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
    if (line.trim() === "") return;
    queue = queue.then(() => handleLine(line));
});
rl.on("close", () => {
    queue.then(async () => {
        await session.stop();
        process.exit(0);
    });
});
process.on("unhandledRejection", (err) => {
    logs.error(`unhandled rejection: ${err?.stack ?? err}`);
});
reply({ id: null, ok: true, result: { ready: true, node: process.version } });
