// Group chats: every member an avatar of its own on the server (docs/api.md, "Avatars"), shown side by side
// in the panel (all members, or only the one who speaks), each with its own emotion; the speaker's avatar
// talks. A server without avatars, or with no room left for even the speaker, is told so by sync()'s answer:
// the caller then shows the speaker on the default avatar, as before avatars existed.
//
// One GroupView per page. Its state (which avatars exist on the server, what each was told) is changed only
// by sync(), clear(), forget() and setEmotion(), which index.js calls one at a time (its refresh chain);
// setEmotion() may run between them, and only touches one member's entry.

import { ServerError } from './api.js';

const AVATAR_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const SLUG_MAX = 48;

/** The server id of a member's avatar, from its SillyTavern avatar file name ("Alice Liddell.png" →
 * "alice-liddell-1f0c3a2b"): readable, URL-safe, the same in every tab, and never "default" (the hash of the
 * whole file name tells apart names that read the same once made safe). */
export function avatarIdFor(fileName) {
    const name = String(fileName ?? '');
    const slug = name.replace(/\.[^/.]+$/, '').normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
        .replace(/[^a-z0-9]+/g, '-').slice(0, SLUG_MAX).replace(/^[-_]+|[-_]+$/g, '');
    const id = `${slug || 'member'}-${fnv1a(name)}`;
    if (!AVATAR_ID.test(id)) {
        throw new Error(`avatar id ${id} is not URL-safe`); // cannot happen: slug is [a-z0-9-], hash hex
    }
    return id;
}

/** FNV-1a, 32 bits, of the UTF-8 bytes, as 8 hex digits. */
function fnv1a(text) {
    let hash = 0x811c9dc5;
    for (const byte of new TextEncoder().encode(text)) {
        hash ^= byte;
        hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash.toString(16).padStart(8, '0');
}

/** The group of the open chat and its members who take part (muted ones are left out), in the group's
 * order: [{avatar, name, character}]; null outside a group chat. */
export function groupMembers(context) {
    if (!context.groupId) {
        return null;
    }
    const group = (context.groups || []).find((g) => String(g.id) === String(context.groupId));
    if (!group) {
        return null;
    }
    const disabled = group.disabled_members || [];
    const members = [];
    for (const avatar of group.members || []) {
        const character = (context.characters || []).find((c) => c.avatar === avatar);
        if (character && !disabled.includes(avatar)) {
            members.push({ avatar, name: character.name, character });
        }
    }
    return { id: String(group.id), name: group.name, members };
}

/** Which member wrote a chat message: its original_avatar, else the avatar file its force_avatar URL names
 * (/thumbnail?type=avatar&file=Alice.png); null for the user, the system or a narrator. */
export function authorOf(message) {
    if (!message || message.is_user || message.is_system) {
        return null;
    }
    if (message.original_avatar) {
        return message.original_avatar;
    }
    const forced = String(message.force_avatar || '');
    const match = forced.match(/[?&]file=([^&#]+)/);
    return match ? decodeURIComponent(match[1]) : null;
}

/** The members to show: all of them, or the one who speaks (else the first). */
export function membersToShow(members, showAll, speaker) {
    if (showAll || !members.length) {
        return members;
    }
    return [members.find((m) => m.avatar === speaker) || members[0]];
}

/** The member who spoke last in the chat (a message's author), else null. */
export function lastAuthor(chat, members) {
    const avatars = new Set(members.map((m) => m.avatar));
    for (let i = (chat || []).length - 1; i >= 0; i--) {
        const author = authorOf(chat[i]);
        if (author && avatars.has(author)) {
            return author;
        }
    }
    return null;
}

export class GroupView {
    /**
     * @param {object} hooks
     * @param {(path: string, options?: object, flags?: object) => Promise<Response|null>} hooks.call a request
     *   to our server (null when it is down; rejects with a ServerError otherwise)
     * @param {(character: object) => Promise<{blob: Blob, folder: string, fromSprite: boolean}>} hooks.image
     *   the character's image to animate
     * @param {(folder: string, fromSprite: boolean) => Promise<{emotions: object, animator: object}>} hooks.config
     * @param {(kind: string, text: string) => void} hooks.toast
     */
    constructor({ call, image, config, toast }) {
        this.call = call;
        this.image = image;
        this.config = config;
        this.toast = toast;
        this.supported = null; // the server has /api/talkinghead/avatars (null: not asked yet)
        this.maxAvatars = null;
        this.groupId = null;
        this.capped = null; // the group whose members did not all fit: it shows only the speaker (said once)
        /** avatar file → {id, name, loaded: bool, emotion: string|null}: the avatars we made on the server */
        this.avatars = new Map();
        this.shown = []; // the members shown now: [{avatar, id, name}]
        this.rejected = new Set(); // avatar files whose image the server refused (said once)
    }

    /** Members are shown on avatars of their own now. */
    get active() {
        return this.shown.length > 0;
    }

    /** The avatar id of a member shown now, else null. */
    shownId(avatar) {
        return this.shown.find((m) => m.avatar === avatar)?.id ?? null;
    }

    static base(id) {
        return `/api/talkinghead/avatars/${encodeURIComponent(id)}`;
    }

    /**
     * Make the server hold the avatars of `group`'s members and decide who shows. Resolves with the members
     * to show ([{avatar, id, name}], in the group's order), or null when the caller should show the speaker
     * on the default avatar (a server without avatars, no room for even one, or the server down).
     * @param {{id: string, members: object[]}} group from groupMembers()
     * @param {boolean} showAll every member, else the speaker only
     * @param {string|null} speaker the avatar file of who speaks (or spoke last)
     * @param {boolean} force ask the server again (it may have restarted)
     */
    async sync(group, showAll, speaker, force) {
        if (this.groupId !== group.id) {
            await this.clear();
            this.groupId = group.id;
        }
        // Asked once per connection (a 404 shows in the browser's console), and again on `force` when the
        // server has avatars (they may be gone after a restart: those are made again).
        if (this.supported === null || (force && this.supported)) {
            const listed = await this.probe();
            if (!listed) {
                await this.clear();
                return null;
            }
            this.forget(this.ids().filter((id) => !listed.has(id)));
        }
        if (!this.supported) {
            return null;
        }
        // Members who left the group lose their avatars.
        const inGroup = new Set(group.members.map((m) => m.avatar));
        for (const avatar of [...this.avatars.keys()]) {
            if (!inGroup.has(avatar)) {
                await this.drop(avatar);
            }
        }
        const all = showAll && this.capped !== group.id;
        const wanted = membersToShow(group.members, all, speaker);
        const speaking = membersToShow(group.members, false, speaker)[0];
        // Too few places left for the members without an avatar: only the speaker, before any is made.
        const missing = wanted.filter((m) => !this.avatars.has(m.avatar)).length;
        if (all && missing > 1 && missing > await this.room()) {
            return this.onlySpeaker(group, showAll, speaker);
        }
        const shown = new Set();
        // The speaker first: the one to show should the others not fit.
        const order = wanted.includes(speaking) ? [speaking, ...wanted.filter((m) => m !== speaking)] : wanted;
        for (const member of order) {
            let made = await this.ensure(member, force);
            if (made === 'full' && all) {
                return this.onlySpeaker(group, showAll, speaker);
            }
            if (made === 'full') {
                // Speaker only: make room among our own avatars of members not shown, then try once more.
                for (const avatar of [...this.avatars.keys()]) {
                    if (avatar !== member.avatar) {
                        await this.drop(avatar);
                    }
                }
                made = await this.ensure(member, false);
            }
            if (made === 'full' || made === 'down') {
                await this.clear(); // nothing fits (other tabs, other clients): the default avatar it is
                return null;
            }
            if (made === 'ok') {
                shown.add(member.avatar);
            }
        }
        this.shown = wanted.filter((m) => shown.has(m.avatar))
            .map((m) => ({ avatar: m.avatar, id: this.avatars.get(m.avatar).id, name: m.name }));
        return this.shown.length ? this.shown : null;
    }

    /** The group's members do not all fit under the server's cap: say so once, give back the room of our
     * avatars but the speaker's, and show only the speaker from now on. */
    async onlySpeaker(group, showAll, speaker) {
        this.capped = group.id;
        this.toast('warning', `The talkinghead server holds at most ${this.maxAvatars ?? 'a few'} avatars ` +
            `(the default one included), too few for the ${group.members.length} members of this group: ` +
            'showing only the character who speaks. Start the server with ' +
            `--talkinghead-max-avatars=${group.members.length + 1} (or more) to see them all.`);
        const keep = membersToShow(group.members, false, speaker)[0].avatar;
        for (const avatar of [...this.avatars.keys()]) {
            if (avatar !== keep) {
                await this.drop(avatar); // room for other tabs and clients
            }
        }
        return this.sync(group, showAll, speaker, false);
    }

    /** How many more avatars the server takes now (Infinity when it does not say). */
    async room() {
        const response = await this.call('/api/talkinghead/avatars', {}, { quiet: true }).catch(() => null);
        const listed = response ? await response.json().catch(() => null) : null;
        if (!Array.isArray(listed?.avatars) || !Number.isFinite(listed?.max_avatars)) {
            return Infinity;
        }
        this.maxAvatars = listed.max_avatars;
        return listed.max_avatars - listed.avatars.length;
    }

    /** Does the server have avatars? Learns max_avatars too. Resolves with the ids it holds (empty for a
     * server without avatars), or null when it is down. */
    async probe() {
        try {
            const response = await this.call('/api/talkinghead/avatars', {}, { quiet: true });
            if (!response) {
                return null;
            }
            const listed = await response.json();
            this.supported = Array.isArray(listed?.avatars);
            this.maxAvatars = Number.isFinite(listed?.max_avatars) ? listed.max_avatars : null;
            return new Set((listed?.avatars || []).map((a) => a.id));
        } catch (error) {
            if (!(error instanceof ServerError) || error.kind !== 'missing') {
                throw error;
            }
            this.supported = false; // an older server: one character at a time
            return new Set();
        }
    }

    /** The member's avatar exists on the server with its image: 'ok', 'full' (429), 'rejected' (its image
     * refused: said once, not shown), 'down'. Made with the image in one request; one already there (another
     * tab's, or ours before a reload) gets the image loaded once per page. */
    async ensure(member, force) {
        const known = this.avatars.get(member.avatar);
        if (known?.loaded) {
            return 'ok';
        }
        if (this.rejected.has(member.avatar) && !force) {
            return 'rejected';
        }
        const id = known?.id ?? avatarIdFor(member.avatar);
        const base = GroupView.base(id);
        const entry = known ?? { id, name: member.name, loaded: false, emotion: null };
        try {
            const image = await this.image(member.character);
            const form = () => {
                const body = new FormData();
                body.append('file', new File([image.blob], 'talkinghead.png', { type: 'image/png' }));
                return body;
            };
            let made;
            try {
                const body = form();
                body.append('id', id);
                made = await this.call('/api/talkinghead/avatars', { method: 'POST', body });
            } catch (error) {
                if (!(error instanceof ServerError && error.status === 409)) {
                    throw error;
                }
                this.avatars.set(member.avatar, entry);
                made = await this.call(`${base}/load`, { method: 'POST', body: form() });
            }
            if (!made) {
                return 'down';
            }
            this.avatars.set(member.avatar, entry);
            const config = await this.config(image.folder, image.fromSprite);
            await this.call(`${base}/load_emotion_templates`, { method: 'POST', json: config.emotions }, { quiet: true })
                .catch((e) => console.debug(`[talkinghead] ${image.folder}/_emotions.json: ${e.message}`));
            await this.call(`${base}/load_animator_settings`, { method: 'POST', json: config.animator }, { quiet: true })
                .catch((e) => console.debug(`[talkinghead] ${image.folder}/_animator.json: ${e.message}`));
            entry.loaded = true;
            this.rejected.delete(member.avatar);
        } catch (error) {
            if (error instanceof ServerError && error.status === 429) {
                return 'full';
            }
            if (error instanceof ServerError && error.kind === 'rejected') {
                if (!this.rejected.has(member.avatar)) {
                    this.rejected.add(member.avatar);
                    this.toast('warning', `The server could not use ${member.name}'s image: ` +
                        `${error.message.replace(/^.*?: \d+ /, '')}. Give the character a 512×512 transparent PNG ` +
                        'sprite named "talkinghead" (Character Expressions → upload).');
                }
                await this.drop(member.avatar);
                return 'rejected';
            }
            throw error;
        }
        if (entry.emotion) {
            // Made again (the server restarted, the tab came back): the member keeps its last emotion.
            await this.call(`${base}/set_emotion`, { method: 'POST', json: { emotion_name: entry.emotion } }).catch(() => {});
        }
        return 'ok';
    }

    /** Set a shown member's emotion; false when the member has no avatar shown. */
    async setEmotion(avatar, label) {
        const entry = this.avatars.get(avatar);
        if (!entry?.loaded || !this.shownId(avatar)) {
            return false;
        }
        entry.emotion = label;
        await this.call(`${GroupView.base(entry.id)}/set_emotion`, { method: 'POST', json: { emotion_name: label } })
            .catch(() => {});
        return true;
    }

    /** The server lost these avatars (it restarted): the next sync() makes them again. */
    forget(ids) {
        for (const entry of this.avatars.values()) {
            if (ids.includes(entry.id)) {
                entry.loaded = false;
            }
        }
    }

    /** Delete one member's avatar on the server. */
    async drop(avatar) {
        const entry = this.avatars.get(avatar);
        this.avatars.delete(avatar);
        this.shown = this.shown.filter((m) => m.avatar !== avatar);
        if (entry) {
            // keepalive: the request is sent even when the page is closing
            await this.call(GroupView.base(entry.id), { method: 'DELETE', keepalive: true }, { quiet: true }).catch(() => {});
        }
    }

    /** Delete all our avatars on the server (the chat left the group, the extension is off, the tab hidden). */
    async clear() {
        this.shown = [];
        for (const avatar of [...this.avatars.keys()]) {
            await this.drop(avatar);
        }
        this.groupId = null;
    }

    /** The server may have changed (it was down and is back): ask again whether it has avatars. */
    recheck() {
        this.supported = null;
        this.capped = null; // restarted, perhaps with a higher cap
    }

    /** Forget everything without asking the server (the extension now talks to another server). */
    reset() {
        this.avatars.clear();
        this.shown = [];
        this.supported = null;
        this.groupId = null;
        this.capped = null;
    }

    /** Our avatars' ids (for the heartbeat: are they all still on the server?). */
    ids() {
        return [...this.avatars.values()].filter((e) => e.loaded).map((e) => e.id);
    }
}
