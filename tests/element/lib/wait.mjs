// Waiting with deadlines: every wait of the client ends, with a clear error when it times out.

const DEFAULT_TIMEOUT_MS = 30_000;
/** Safety re-check interval; conditions are normally re-checked on every client event. */
const RECHECK_MS = 250;

/** An error the driver gets back as {ok: false, code, error}. */
export class ProtocolError extends Error {
    constructor(code, message) {
        super(message);
        this.code = code;
    }
}

export function deadlineFrom(timeoutMs) {
    const ms = timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
        throw new ProtocolError("BAD_REQUEST", "timeout_ms must be a positive number");
    }
    return Date.now() + ms;
}

export function requireString(req, field) {
    const value = req[field];
    if (typeof value !== "string" || value === "") {
        throw new ProtocolError("BAD_REQUEST", `missing or empty string field "${field}"`);
    }
    return value;
}

export async function withTimeout(promise, ms, label) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new ProtocolError("TIMEOUT", `${label}: no answer within ${ms} ms`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(timer);
    }
}

/** Wakes waiters whenever the client's state may have changed (sync, timeline, decryption). */
export class Changes {
    constructor() {
        this.waiters = new Set();
    }

    notify() {
        const waiters = [...this.waiters];
        this.waiters.clear();
        for (const wake of waiters) wake();
    }

    next(ms) {
        return new Promise((resolve) => {
            const timer = setTimeout(done, ms);
            const waiters = this.waiters;
            function done() {
                clearTimeout(timer);
                waiters.delete(done);
                resolve();
            }
            waiters.add(done);
        });
    }

    /**
     * Resolves with the predicate's first truthy value, re-checked on every change. At the
     * deadline: throws TIMEOUT, or resolves undefined when `orTimeout` is set.
     */
    async until(deadline, label, predicate, { orTimeout = false } = {}) {
        for (;;) {
            const value = predicate();
            if (value !== undefined && value !== null && value !== false) return value;
            const left = deadline - Date.now();
            if (left <= 0) {
                if (orTimeout) return undefined;
                throw new ProtocolError("TIMEOUT", `timed out waiting for ${label}`);
            }
            await this.next(Math.min(left, RECHECK_MS));
        }
    }
}
