// Routes all console output (ours, matrix-js-sdk's and the Rust crypto's) to stderr, filtered
// by level, so that stdout stays a clean channel for protocol replies.

import { format } from "node:util";
import process from "node:process";

const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, silent: 5 };

export class Logs {
    constructor(level) {
        const name = String(level).toLowerCase();
        this.threshold = LEVELS[name] ?? LEVELS.warn;
    }

    install() {
        const write = (level) => (...args) => {
            if (LEVELS[level] < this.threshold) return;
            process.stderr.write(`[element-client ${level}] ${format(...args)}\n`);
        };
        console.trace = write("trace");
        console.debug = write("debug");
        console.log = write("info");
        console.info = write("info");
        console.warn = write("warn");
        console.error = write("error");
    }

    info(message) {
        console.info(message);
    }

    error(message) {
        console.error(message);
    }
}
