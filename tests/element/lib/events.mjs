// How an incoming event looks to Element: decrypted or not, why not, and which shield.

import {
    DecryptionFailureCode,
    EventShieldColour,
    EventShieldReason,
} from "matrix-js-sdk/lib/crypto-api/index.js";

/**
 * Failure codes after which waiting longer cannot help: the sender's device is refused by
 * the isolation mode, or the sender said it withholds the key.
 */
export const FINAL_FAILURES = new Set([
    DecryptionFailureCode.UNSIGNED_SENDER_DEVICE,
    DecryptionFailureCode.MEGOLM_KEY_WITHHELD,
    DecryptionFailureCode.MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE,
    DecryptionFailureCode.SENDER_IDENTITY_PREVIOUSLY_VERIFIED,
]);

/** True when the event is still encrypted or its decryption is still running. */
export function isPending(ev) {
    return ev.isBeingDecrypted() || ev.shouldAttemptDecryption();
}

/** True when the event decrypted into a message Element would display. */
export function isDecrypted(ev) {
    return ev.isEncrypted() && !ev.isDecryptionFailure() && !isPending(ev) && ev.getType() !== "m.room.encrypted";
}

function enumName(enumObject, value) {
    if (value === null || value === undefined) return null;
    return enumObject[value] ?? String(value);
}

/** Finds the sending device: by the Curve25519 key that decrypted it, else by its claim. */
async function senderDeviceId(crypto, ev) {
    const senderKey = ev.getSenderKey();
    const claimed = ev.getWireContent()?.device_id ?? null;
    if (!senderKey) return claimed;
    const devices = (await crypto.getUserDeviceInfo([ev.getSender()])).get(ev.getSender());
    for (const [deviceId, device] of devices ?? []) {
        if (device.keys.get(`curve25519:${deviceId}`) === senderKey) return deviceId;
    }
    return claimed;
}

/**
 * A JSON description of a received event. `failureCodes` is every decryption failure code
 * seen for it so far (a key may arrive late, turning a failure into a success).
 */
export async function describeEvent(crypto, ev, failureCodes) {
    const content = ev.getContent() ?? {};
    const decrypted = isDecrypted(ev);
    const out = {
        event_id: ev.getId(),
        room_id: ev.getRoomId(),
        sender: ev.getSender(),
        type: ev.getType(),
        wire_type: ev.getWireType(),
        encrypted: ev.isEncrypted(),
        decrypted,
        pending: isPending(ev),
        failure_code: ev.decryptionFailureReason ?? null,
        failure_codes_seen: [...(failureCodes ?? [])],
        body: decrypted || !ev.isEncrypted() ? (content.body ?? null) : null,
        msgtype: decrypted || !ev.isEncrypted() ? (content.msgtype ?? null) : null,
        // An encrypted attachment's address and key, as Element reads them to show the file.
        file: decrypted ? (content.file ?? null) : null,
        shield_colour: null,
        shield_reason: null,
        sender_device_id: null,
        sender_device_signed_by_owner: null,
        sender_device_cross_signing_verified: null,
    };
    if (!ev.isEncrypted()) return out;
    const info = await crypto.getEncryptionInfoForEvent(ev);
    if (info !== null) {
        out.shield_colour = enumName(EventShieldColour, info.shieldColour);
        out.shield_reason = enumName(EventShieldReason, info.shieldReason);
    }
    const deviceId = await senderDeviceId(crypto, ev);
    out.sender_device_id = deviceId;
    if (deviceId) {
        const status = await crypto.getDeviceVerificationStatus(ev.getSender(), deviceId);
        if (status !== null) {
            out.sender_device_signed_by_owner = status.signedByOwner;
            out.sender_device_cross_signing_verified = status.crossSigningVerified;
        }
    }
    return out;
}
