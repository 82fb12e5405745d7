// talkinghead-extras for SillyTavern: a live, talking avatar of the current character, from the
// talkinghead-extras server (../../docs/api.md in the server's repository). Plain ES module, no build step.
// Only SillyTavern.getContext() is used (no imports from SillyTavern's files), so it survives across versions.

import { adviceFor, Connection, Server, ServerError } from './api.js';
import { authorOf, GroupView, groupMembers, lastAuthor } from './group.js';
import { Panel } from './panel.js';
import { SpeechWatcher } from './speech.js';

const SETTINGS_KEY = 'talkinghead_extras';
const DEFAULT_URL = 'http://localhost:5100';
const EMOTIONS = ['admiration', 'amusement', 'anger', 'annoyance', 'approval', 'caring', 'confusion',
    'curiosity', 'desire', 'disappointment', 'disapproval', 'disgust', 'embarrassment', 'excitement', 'fear',
    'gratitude', 'grief', 'joy', 'love', 'nervousness', 'neutral', 'optimism', 'pride', 'realization',
    'relief', 'remorse', 'sadness', 'surprise'];
const DEFAULTS = Object.freeze({
    enabled: true,
    url: '', // empty: the Extras URL, else DEFAULT_URL
    apiKey: '', // empty: the Extras key
    format: 'png',
    background: '#ffffff',
    size: 256,
    left: null,
    top: null,
    replaceSprite: false,
    emotionSource: 'auto', // auto | classify | expressions
    lipsync: true,
    pauseWhenHidden: true,
    groupShow: 'auto', // group chats: auto (all members in Visual Novel mode, else the speaker) | all | speaker
});
const STREAM_POLL_MS = 500;
const VERSION = '1.1.0'; // manifest.json's
const BASE_URL = new URL('.', import.meta.url);

const context = () => SillyTavern.getContext();

const state = {
    hidden: document.visibilityState === 'hidden',
    character: null, // the character the server shows: {key, name}
    loading: null, // promise of the load in progress
    loadSerial: 0,
    generating: false,
    streaming: false,
    speaking: false,
    synced: false, // the server follows the TTS clip's own track
    talk: null, // what we last told the server: 'start' | 'stop' | 'lipsync'
    talkBase: null, // … and which avatar: '/api/talkinghead' (the default) or a group member's avatar
    streamTimer: null,
    speakerAvatar: null, // group chats: who speaks now (else spoke last), their avatar file
    expression: null, // the sprite label Character Expressions shows
    memberExpressions: new Map(), // group chats: avatar file → the label its sprite shows
    configCache: new Map(), // sprite folder -> {emotions, animator} (_emotions.json / _animator.json)
    loadErrorShown: new Set(),
};

function settings() {
    const all = context().extensionSettings;
    if (!all[SETTINGS_KEY] || typeof all[SETTINGS_KEY] !== 'object') {
        all[SETTINGS_KEY] = {};
    }
    const own = all[SETTINGS_KEY];
    for (const [key, value] of Object.entries(DEFAULTS)) {
        if (!(key in own)) {
            own[key] = value;
        }
    }
    return own;
}

function saveSettings() {
    context().saveSettingsDebounced();
}

/** The server's URL and key: ours if set, else the Extras connection's. */
function serverConfig() {
    const own = settings();
    const extras = context().extensionSettings;
    return {
        url: own.url || extras.apiUrl || DEFAULT_URL,
        key: own.apiKey || extras.apiKey || '',
    };
}

const server = new Server(serverConfig);
const connection = new Connection(server, {
    onUp: () => {
        group.recheck();
        refresh({ force: true });
    },
    onStatus: (text) => showStatus(),
    toast: (kind, text) => toast(kind, text),
});

function toast(kind, text) {
    if (typeof toastr !== 'undefined') {
        toastr[kind](text, 'Talkinghead', { timeOut: kind === 'success' ? 3000 : 12000, preventDuplicates: true });
    } else {
        console.warn(`[talkinghead] ${text}`);
    }
}

/** The extension should be animating now. */
function active() {
    return settings().enabled && !(state.hidden && settings().pauseWhenHidden);
}

/** Send a request; an outage is reported once by the connection and retried; returns null on failure. */
async function call(path, options = {}, { quiet = false } = {}) {
    if (!connection.up) {
        return null;
    }
    try {
        return await server.request(path, options);
    } catch (error) {
        if (!connection.failed(error) && !quiet) {
            console.debug(`[talkinghead] ${error.message}`);
        }
        if (!error.isOutage) {
            throw error;
        }
        return null;
    }
}

// -- the character ---------------------------------------------------------------------------------------

/** The character to show: the chat's character, or in a group the one who speaks (else spoke last). */
function currentCharacter() {
    const c = context();
    const characters = c.characters || [];
    if (c.groupId) {
        const group = (c.groups || []).find((g) => g.id === c.groupId);
        let avatar = state.speakerAvatar;
        if (!avatar) {
            const chat = c.chat || [];
            for (let i = chat.length - 1; i >= 0 && !avatar; i--) {
                if (!chat[i].is_user && !chat[i].is_system && chat[i].original_avatar) {
                    avatar = chat[i].original_avatar;
                }
            }
        }
        if (!avatar && group) {
            avatar = (group.members || []).find((m) => !(group.disabled_members || []).includes(m));
        }
        return characters.find((x) => x.avatar === avatar) || null;
    }
    if (c.characterId === undefined || c.characterId === null || c.characterId === '') {
        return null;
    }
    return characters[c.characterId] || null;
}

/** The character's sprite folder: its name, or the folder set in Character Expressions' override. */
function spriteFolder(character) {
    const base = String(character.avatar || '').replace(/\.[^/.]+$/, '');
    const override = (context().extensionSettings.expressionOverrides || []).find((e) => e.name === base);
    return override?.path || character.name;
}

async function fetchFromSillyTavern(url) {
    const response = await fetch(url, { headers: context().getRequestHeaders?.() ?? {}, method: 'GET' });
    if (!response.ok) {
        throw new Error(`${response.status} ${url}`);
    }
    return response;
}

/** The image to animate: the `talkinghead` sprite when there is one, else the avatar as an RGBA PNG. */
async function characterImage(character) {
    const folder = spriteFolder(character);
    let sprites = [];
    try {
        sprites = await (await fetch(`/api/sprites/get?name=${encodeURIComponent(folder)}`)).json();
    } catch {
        sprites = [];
    }
    const sprite = Array.isArray(sprites) ? sprites.find((s) => s.label === 'talkinghead') : null;
    if (sprite) {
        return { blob: await (await fetchFromSillyTavern(sprite.path)).blob(), fromSprite: true, folder };
    }
    // The full-size avatar (the UI shows /thumbnail?type=avatar&file=…, which is small and a JPEG).
    const avatar = await (await fetchFromSillyTavern(`/characters/${encodeURIComponent(character.avatar)}`)).blob();
    return { blob: await asRgbaPng(avatar), fromSprite: false, folder };
}

/** Any image the browser can decode → PNG with an alpha channel (what the server requires). */
async function asRgbaPng(blob) {
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    bitmap.close?.();
    return new Promise((resolve, reject) => canvas.toBlob((png) => (png ? resolve(png) : reject(new Error('PNG encoding failed'))), 'image/png'));
}

/** _emotions.json / _animator.json beside the talkinghead sprite (as the old client read them), else {}. */
async function characterConfig(folder, fromSprite) {
    if (!fromSprite) {
        return { emotions: {}, animator: {} };
    }
    if (state.configCache.has(folder)) {
        return state.configCache.get(folder);
    }
    const read = async (name) => {
        try {
            const response = await fetch(`/characters/${encodeURIComponent(folder)}/${name}`, { cache: 'no-store' });
            return response.ok ? await response.json() : {};
        } catch {
            return {};
        }
    };
    const config = { emotions: await read('_emotions.json'), animator: await read('_animator.json') };
    state.configCache.set(folder, config);
    return config;
}

/** Bring the server in line with what should show: load the character, or unload. Last call wins. */
async function refresh({ force = false } = {}) {
    const serial = ++state.loadSerial;
    const previous = state.loading;
    const run = (async () => {
        await previous?.catch(() => {});
        if (serial !== state.loadSerial) {
            return; // a newer refresh supersedes this one
        }
        await applyRefresh(serial, force);
    })();
    state.loading = run;
    return run;
}

async function applyRefresh(serial, force) {
    const character = active() ? currentCharacter() : null;
    if (!active()) {
        panel.setFeed(null);
        panel.setTiles([]);
        panel.show(false);
        placeImage();
        await group.clear().catch(() => {});
        if (state.character || force) {
            state.character = null;
            if (connection.up) {
                await call('/api/talkinghead/unload');
            }
        }
        connection.stop();
        return;
    }
    if (!connection.up) {
        panel.show(Boolean(character));
        // While down, the connection retries by itself and refreshes when the server is back.
        if (connection.state === 'down' || connection.state === 'checking' || !(await connection.check())) {
            return;
        }
        force = true;
    }
    const members = groupMembers(context());
    if (members && await showGroup(members, serial, force)) {
        return;
    }
    if (!members && group.groupId !== null) {
        panel.setTiles([]);
        await group.clear().catch(() => {}); // the chat left the group
    }
    if (!character) {
        panel.setFeed(null);
        panel.show(false);
        placeImage();
        if (state.character || force) {
            state.character = null;
            await call('/api/talkinghead/unload');
        }
        return;
    }
    const key = character.avatar;
    panel.setName(character.name);
    panel.show(true);
    if (force || state.character?.key !== key) {
        try {
            const image = await characterImage(character);
            if (serial !== state.loadSerial) {
                return;
            }
            const form = new FormData();
            form.append('file', new File([image.blob], 'talkinghead.png', { type: 'image/png' }));
            const loaded = await call('/api/talkinghead/load', { method: 'POST', body: form });
            if (!loaded) {
                return;
            }
            state.character = { key, name: character.name };
            const config = await characterConfig(image.folder, image.fromSprite);
            await call('/api/talkinghead/load_emotion_templates', { method: 'POST', json: config.emotions }, { quiet: true })
                .catch((e) => console.debug(`[talkinghead] ${image.folder}/_emotions.json: ${e.message}`));
            await call('/api/talkinghead/load_animator_settings', { method: 'POST', json: config.animator }, { quiet: true })
                .catch((e) => console.debug(`[talkinghead] ${image.folder}/_animator.json: ${e.message}`));
            state.talk = null; // the server's talking state is worth restating after a load
            applyTalking();
        } catch (error) {
            if (error instanceof ServerError && error.kind === 'rejected') {
                if (!state.loadErrorShown.has(key)) {
                    state.loadErrorShown.add(key);
                    toast('warning', `The server could not use ${character.name}'s image: ${error.message.replace(/^.*?: \d+ /, '')}. ` +
                        'Give the character a 512×512 transparent PNG sprite named "talkinghead" (Character Expressions → upload).');
                }
            } else {
                console.debug('[talkinghead] loading the character failed', error);
            }
        }
    }
    showFeed();
    placeImage();
}

/** The stream of the default avatar, or of a group member's avatar `id`. */
function feedUrl(id = null) {
    const own = settings();
    const query = own.format === 'jpeg' ? { format: 'jpeg', bg: String(own.background || '#ffffff').replace('#', '') } : null;
    return server.url(id ? `${GroupView.base(id)}/result_feed` : '/api/talkinghead/result_feed', query);
}

/** The avatar shows something now: the chat's character on the default avatar, or group members. */
function showing() {
    return Boolean(state.character) || group.active;
}

// -- group chats -----------------------------------------------------------------------------------------

const group = new GroupView({
    call,
    image: characterImage,
    config: characterConfig,
    toast: (kind, text) => toast(kind, text),
});

/** SillyTavern's Visual Novel mode is on (it shows every member of a group chat). */
function visualNovelOn() {
    const c = context();
    return Boolean(c.groupId) && Boolean(c.powerUserSettings?.waifuMode ?? document.body.classList.contains('waifuMode'));
}

function showAllMembers() {
    const show = settings().groupShow;
    return show === 'all' || (show !== 'speaker' && visualNovelOn());
}

/** Who speaks in the group: who was drafted or last spoke, else the first member. */
function groupSpeaker(members) {
    const avatars = members.members.map((m) => m.avatar);
    if (!avatars.includes(state.speakerAvatar)) {
        state.speakerAvatar = lastAuthor(context().chat, members.members) ?? avatars[0] ?? null;
    }
    return state.speakerAvatar;
}

/** A group chat on avatars of its own, one per member shown; false: show the speaker on the default avatar
 * (a server without avatars, or no room even for one). */
async function showGroup(members, serial, force) {
    let shown = null;
    try {
        shown = await group.sync(members, showAllMembers(), groupSpeaker(members), force);
    } catch (error) {
        console.debug('[talkinghead] group avatars', error);
        await group.clear().catch(() => {});
    }
    if (!shown) {
        panel.setTiles([]);
        return false;
    }
    if (serial !== state.loadSerial) {
        return true; // a newer refresh shows what is wanted now
    }
    panel.setFeed(null);
    if (state.character || force) {
        state.character = null; // the default avatar rests while the members show on their own
        await call('/api/talkinghead/unload').catch(() => {});
    }
    panel.setName(members.name);
    showTiles();
    panel.show(true);
    placeImage();
    applyTalking();
    onExpressionChanged();
    return true;
}

function showTiles() {
    const opened = panel.setTiles(group.shown.map((m) => ({
        key: m.id, name: m.name, url: feedUrl(m.id), speaking: m.avatar === state.speakerAvatar && group.shown.length > 1,
    })));
    if (opened) {
        feed.since = Date.now();
    }
}

// -- emotion ---------------------------------------------------------------------------------------------

/** Character Expressions shows a sprite (and so classifies each message itself). */
function expressionsShowSprite() {
    const disabled = context().extensionSettings.disabledExtensions || [];
    if (disabled.includes('expressions')) {
        return false;
    }
    const holder = document.getElementById('expression-holder');
    const sprite = document.querySelector('#expression-holder img.expression');
    const src = sprite?.getAttribute('src') || '';
    return Boolean(holder && holder.style.display !== 'none' && src && !src.startsWith('data:') && !src.includes('/api/talkinghead/'));
}

/** The emotion a sprite path stands for: /characters/Name/joy.png, joy-2.png, default-expressions/joy.png */
export function labelFromSprite(src) {
    const file = decodeURIComponent(String(src).split(/[?#]/)[0].split('/').pop() || '');
    const label = file.replace(/\.[^.]+$/, '').split(/[-.]/)[0].toLowerCase();
    return EMOTIONS.includes(label) ? label : null;
}

function followExpressions() {
    const source = settings().emotionSource;
    return source === 'expressions' || (source === 'auto' && expressionsShowSprite());
}

/** The emotion Character Expressions shows: its data-expression label (1.12.13+), else the sprite's file name. */
export function labelOfSprite(sprite) {
    if (!sprite) {
        return null;
    }
    const named = String(sprite.getAttribute('data-expression') || '').trim().toLowerCase();
    if (named) {
        return EMOTIONS.includes(named) ? named : null; // a custom expression (or "talkinghead"): no emotion of ours
    }
    return labelFromSprite(sprite.getAttribute('src') || '');
}

/** A sprite Character Expressions shows (not empty, not our stream). */
function isSprite(img) {
    const src = img?.getAttribute('src') || '';
    return Boolean(src && !src.startsWith('data:') && !src.includes('/api/talkinghead/')
        && !img.closest('.expression-holder.hidden'));
}

/** Character Expressions' sprite of a group member: its own holder in Visual Novel mode; null when it shows
 * none. (Outside that mode its one sprite follows whoever spoke last, a message late: members classify.) */
function memberSprite(avatar) {
    for (const holder of document.querySelectorAll('#visual-novel-wrapper .expression-holder')) {
        if (holder.getAttribute('data-avatar') === avatar) {
            const images = holder.querySelectorAll('img');
            const img = images[images.length - 1]; // a sprite change fades in a copy after the old one
            return isSprite(img) ? img : null;
        }
    }
    return null;
}

/** The emotion a member's sprite shows: from its file name first (SillyTavern 1.19's Visual Novel mode sets
 * data-expression on the sprite it replaces, so the one shown carries the label before), else its label. */
function memberSpriteLabel(img) {
    return img ? labelFromSprite(img.getAttribute('src') || '') ?? labelOfSprite(img) : null;
}

function followMemberExpressions(avatar) {
    const source = settings().emotionSource;
    return source === 'expressions' || (source === 'auto' && Boolean(memberSprite(avatar)));
}

/** Group members follow their own sprites' emotions (where Character Expressions shows them). */
async function onMemberExpressions() {
    if (!active() || settings().emotionSource === 'classify') {
        return;
    }
    for (const member of group.shown) {
        const label = memberSpriteLabel(memberSprite(member.avatar));
        if (label && label !== state.memberExpressions.get(member.avatar)) {
            state.memberExpressions.set(member.avatar, label);
            await group.setEmotion(member.avatar, label);
        }
    }
}

async function onExpressionChanged() {
    dropStrayFeeds();
    if (group.active) {
        await onMemberExpressions();
        return;
    }
    const sprite = document.querySelector('#expression-holder img.expression');
    const label = labelOfSprite(sprite);
    placeImage();
    if (!label || label === state.expression) {
        return;
    }
    state.expression = label;
    if (active() && settings().emotionSource !== 'classify' && state.character) {
        await call('/api/talkinghead/set_emotion', { method: 'POST', json: { emotion_name: label } }).catch(() => {});
    }
}

/** Classifier input: without markup and quotes, at most ~500 characters (its start and its end). */
function classifyText(text) {
    let clean = String(text).replace(/```[\s\S]*?```/g, ' ').replace(/<[^>]*>/g, ' ').replace(/[*_"“”~]/g, '').replace(/\s+/g, ' ').trim();
    if (clean.length > 500) {
        clean = `${clean.slice(0, 250)} … ${clean.slice(-250)}`;
    }
    return clean;
}

async function onCharacterMessage(messageId) {
    if (!active()) {
        return;
    }
    const c = context();
    const message = c.chat?.[Number(messageId)];
    if (!message || message.is_user || message.is_system || !message.mes || message.mes === '...') {
        return;
    }
    const author = c.groupId ? authorOf(message) : null;
    if (author) {
        state.speakerAvatar = author;
        await refresh(); // the speaker shows (the one shown, or the one highlighted)
    }
    await state.loading?.catch(() => {});
    if (!connection.up) {
        return;
    }
    const text = classifyText(message.mes);
    if (group.active) {
        // Each member's emotion follows their own messages.
        if (!author || !group.shownId(author) || followMemberExpressions(author) || !text) {
            return;
        }
        const response = await call('/api/classify', { method: 'POST', json: { text } }).catch(() => null);
        const label = response ? (await response.json().catch(() => null))?.classification?.[0]?.label : null;
        if (label) {
            await group.setEmotion(author, label);
        }
        return;
    }
    if (!state.character || followExpressions()) {
        return; // Character Expressions classifies it; its sprite change sets the emotion
    }
    if (text) {
        // The server sets the avatar's emotion to the top label itself.
        await call('/api/classify', { method: 'POST', json: { text } }).catch(() => {});
    }
}

// -- talking ---------------------------------------------------------------------------------------------

/** start_talking while a reply streams or a clip plays without its own track; the track drives otherwise. */
function wantedTalk() {
    if (state.speaking) {
        return state.synced ? 'lipsync' : 'start';
    }
    return state.streaming ? 'start' : 'stop';
}

/** The avatar that talks: the default one, or in a group the speaker's (null: nobody shown). */
function talkBase() {
    if (!active()) {
        return null;
    }
    if (group.active) {
        const id = group.shownId(state.speakerAvatar);
        return id ? GroupView.base(id) : null;
    }
    return state.character ? '/api/talkinghead' : null;
}

async function applyTalking() {
    const base = talkBase();
    if (base !== state.talkBase) {
        // Another member speaks now: the one before stops (a lip-sync track plays out on its own).
        const [previous, was] = [state.talkBase, state.talk];
        state.talkBase = base;
        state.talk = null;
        if (previous && was === 'start') {
            await call(`${previous}/stop_talking`).catch(() => {});
        }
    }
    const want = wantedTalk();
    if (!base || want === state.talk) {
        return;
    }
    state.talk = want;
    if (want !== 'lipsync') {
        await call(`${base}/${want}_talking`).catch(() => {});
    }
}

function pollStreaming() {
    const c = context();
    const processor = c.streamingProcessor;
    const last = c.chat?.[c.chat.length - 1];
    const streaming = Boolean(state.generating && processor && !processor.isFinished && last && !last.is_user
        && last.mes && last.mes !== '...');
    if (streaming !== state.streaming) {
        state.streaming = streaming;
        applyTalking();
    }
}

function onGenerationStarted(type, _options, dryRun) {
    if (dryRun || type === 'quiet') {
        return;
    }
    state.generating = true;
    clearInterval(state.streamTimer);
    state.streamTimer = setInterval(pollStreaming, STREAM_POLL_MS);
}

function onGenerationEnded() {
    state.generating = false;
    clearInterval(state.streamTimer);
    state.streamTimer = null;
    pollStreaming();
}

/** Group chats: the character TTS speaks for (by name) is the speaker: shown, and the one who talks. */
async function showSpeaker(characterName) {
    const members = groupMembers(context());
    const speaker = characterName ? members?.members.find((m) => m.name === characterName) : null;
    if (speaker && (speaker.avatar !== state.speakerAvatar || (!group.active && speaker.avatar !== state.character?.key))) {
        state.speakerAvatar = speaker.avatar;
        await refresh();
    }
    await state.loading?.catch(() => {});
}

const speech = new SpeechWatcher({
    enabled: () => settings().lipsync && active() && connection.up && showing(),
    ttsSettings: () => context().extensionSettings?.tts || {},
    beforeSpeak: (characterName) => showSpeaker(characterName).catch(() => {}),
    send: async (bytes, offsetMs, rate) => {
        try {
            // offset_ms: how far the clip has played (in the clip's own time); rate: its playback rate
            // (SillyTavern's TTS "playback_rate"), so the track plays as fast as the audio.
            const base = talkBase();
            if (!base) {
                return 'rejected';
            }
            const answer = await call(`${base}/lipsync`, {
                method: 'POST', body: bytes, contentType: 'application/octet-stream',
                query: { start: 'now', offset_ms: Math.round(offsetMs), rate: Math.round(Math.min(4, Math.max(0.25, rate || 1)) * 100) / 100 },
            });
            return answer ? 'ok' : 'rejected';
        } catch (error) {
            console.debug(`[talkinghead] lip-sync: ${error.message}`);
            return error.kind === 'missing' ? 'unsupported' : 'rejected';
        }
    },
    changed: (speaking, synced) => {
        const ended = state.speaking && !speaking;
        state.speaking = speaking;
        state.synced = synced;
        if (synced) {
            state.talk = 'lipsync';
        }
        if (ended) {
            // SillyTavern's own TTS extension sends stop_talking at a clip's end too (when the Extras
            // connection lists talkinghead): state ours after it, so a reply still streaming keeps talking.
            state.talk = null;
            applyTalking();
            if (state.streaming) {
                setTimeout(() => {
                    state.talk = null;
                    applyTalking();
                }, 400);
            }
        } else {
            applyTalking();
        }
    },
});

// -- where the stream shows ------------------------------------------------------------------------------

/** Visual Novel mode (group chats) shows one copy of #expression-holder per member: it would copy our <img>. */
function visualNovelMode() {
    const c = context();
    const wrapper = document.getElementById('visual-novel-wrapper');
    return Boolean((c.groupId && c.powerUserSettings?.waifuMode)
        || (wrapper && (wrapper.offsetParent !== null || wrapper.childElementCount > 0)));
}

/** Copies of the stream's <img> (Visual Novel mode clones #expression-holder): each would be a second
 * stream from the server. Blank and remove them. */
function dropStrayFeeds() {
    for (const img of document.querySelectorAll(`img#${panel.img.id}, img[src*="/api/talkinghead/result_feed"]`)) {
        if (img !== panel.img && !panel.root.contains(img)) {
            img.removeAttribute('src');
            img.remove();
        }
    }
}

function placeImage() {
    const lend = settings().replaceSprite && active() && state.character && expressionsShowSprite() && !visualNovelMode();
    const holder = lend ? document.getElementById('expression-holder') : null;
    panel.lendImageTo(holder);
    document.body.classList.toggle('th-extras-replace-sprite', Boolean(holder));
    panel.root.classList.toggle('th-extras-lent', Boolean(holder));
    if (holder) {
        panel.show(false);
    } else if (active() && showing()) {
        panel.show(true);
    }
}

// -- visibility, on/off, slash command -------------------------------------------------------------------

function onVisibilityChange() {
    const hidden = document.visibilityState === 'hidden';
    if (hidden === state.hidden) {
        return;
    }
    state.hidden = hidden;
    if (!settings().pauseWhenHidden) {
        return;
    }
    // Hidden: unload (the server's CPU goes idle) and close the stream; shown: load again.
    refresh({ force: !hidden });
}

function setEnabled(enabled) {
    settings().enabled = Boolean(enabled);
    saveSettings();
    $('#th_extras_enabled').prop('checked', settings().enabled);
    refresh({ force: true });
}

function thCommand(_args, value) {
    const word = String(value ?? '').trim().toLowerCase();
    if (word === 'on' || word === 'off') {
        setEnabled(word === 'on');
    } else if (word === 'status') {
        const who = group.active ? group.shown.map((m) => m.name).join(', ') : state.character?.name;
        return `${connection.describe()}; showing ${who || 'nobody'}`;
    } else if (!word) {
        setEnabled(!settings().enabled);
    } else {
        toast('info', 'Use /th on, /th off, /th (toggle) or /th status.');
    }
    return settings().enabled ? 'on' : 'off';
}

function registerSlashCommand() {
    const c = context();
    const callback = thCommand;
    const help = 'Talkinghead live avatar: <code>/th on</code>, <code>/th off</code>, <code>/th</code> toggles, <code>/th status</code>. Returns on/off.';
    if (c.SlashCommandParser?.commands?.th?.callback === callback) {
        return;
    }
    if (c.SlashCommandParser && c.SlashCommand?.fromProps) {
        c.SlashCommandParser.addCommandObject(c.SlashCommand.fromProps({
            name: 'th', callback, aliases: ['talkinghead'], helpString: help, returns: 'on or off',
        }));
    } else if (typeof c.registerSlashCommand === 'function') {
        c.registerSlashCommand('th', callback, ['talkinghead'], help, true, true);
    }
}

// -- settings UI -----------------------------------------------------------------------------------------

function showStatus(extra) {
    const text = active() ? connection.describe() : 'off';
    panel.setStatus(connection.up || !active() ? '' : text);
    const box = document.getElementById('th_extras_status');
    if (box && extra === undefined) {
        box.dataset.connection = text;
        if (!box.dataset.tested) {
            box.textContent = text;
        }
    } else if (box) {
        box.dataset.tested = '1';
        box.textContent = extra;
    }
}

async function testConnection() {
    const lines = [`Server: ${server.baseUrl}`];
    try {
        const modules = await connection.identify();
        lines.push(`Version: ${modules.server} ${modules.version}`);
        lines.push(`Modules: ${(modules.modules || []).join(', ') || '(none)'}`);
        if (!(modules.modules || []).includes('talkinghead')) {
            lines.push('talkinghead is not enabled: start the server with --enable-modules=classify,talkinghead');
        } else {
            const stats = await server.json('/api/talkinghead/stats');
            lines.push(`Animation: ${stats.state}, emotion ${stats.emotion}${stats.talking ? ', talking' : ''}`);
            lines.push(`Frames: ${stats.render_fps} FPS (target ${stats.target_fps}), ${stats.viewers} viewer(s), ${stats.mode} mode`);
            lines.push(`Poser: ${stats.model ?? '?'} on ${stats.device ?? '?'} (${stats.backend ?? '?'} backend)`);
            if (stats.last_error) {
                lines.push(`Last error: ${stats.last_error}`);
            }
        }
        connection.check();
    } catch (error) {
        lines.push(error instanceof ServerError && error.isOutage ? `Failed: ${adviceText(error)}` : `Failed: ${error.message}`);
    }
    showStatus(lines.join('\n'));
}

function adviceText(error) {
    return error.kind === 'foreign' ? adviceFor(error, server.baseUrl)
        : error.kind === 'auth' ? 'the API key is wrong (see the server\'s api_key.txt)'
        : error.kind === 'not-enabled' ? 'talkinghead is not enabled on the server'
            : `${error.message}. Is the server running?`;
}

async function addSettingsUi() {
    const html = await (await fetch(new URL('settings.html', BASE_URL))).text();
    const container = document.getElementById('extensions_settings2') || document.getElementById('extensions_settings');
    if (!container) {
        return;
    }
    container.insertAdjacentHTML('beforeend', html);
    const own = settings();
    const extras = context().extensionSettings;
    $('#th_extras_enabled').prop('checked', own.enabled).on('change', function () {
        setEnabled(this.checked);
    });
    $('#th_extras_url').val(own.url).attr('placeholder', extras.apiUrl || DEFAULT_URL).on('change', function () {
        own.url = String(this.value).trim();
        saveSettings();
        reconnect();
    });
    $('#th_extras_key').val(own.apiKey).attr('placeholder', extras.apiKey ? '(the Extras key)' : '(none)').on('change', function () {
        own.apiKey = String(this.value).trim();
        saveSettings();
        reconnect();
    });
    $('#th_extras_format').val(own.format).on('change', function () {
        own.format = this.value === 'jpeg' ? 'jpeg' : 'png';
        saveSettings();
        refreshFeed();
    });
    $('#th_extras_bg').val(own.background).on('change', function () {
        own.background = this.value;
        saveSettings();
        refreshFeed();
    });
    $('#th_extras_size').val(own.size).on('input', function () {
        panel.resize(Number(this.value));
    });
    $('#th_extras_size_value').text(own.size);
    $('#th_extras_replace_sprite').prop('checked', own.replaceSprite).on('change', function () {
        own.replaceSprite = this.checked;
        saveSettings();
        placeImage();
    });
    $('#th_extras_emotion_source').val(own.emotionSource).on('change', function () {
        own.emotionSource = ['auto', 'classify', 'expressions'].includes(this.value) ? this.value : 'auto';
        saveSettings();
    });
    $('#th_extras_lipsync').prop('checked', own.lipsync).on('change', function () {
        own.lipsync = this.checked;
        saveSettings();
    });
    $('#th_extras_group_show').val(own.groupShow).on('change', function () {
        own.groupShow = ['auto', 'all', 'speaker'].includes(this.value) ? this.value : 'auto';
        saveSettings();
        refresh();
    });
    $('#th_extras_pause_hidden').prop('checked', own.pauseWhenHidden).on('change', function () {
        own.pauseWhenHidden = this.checked;
        saveSettings();
    });
    $('#th_extras_test').on('click', testConnection);
    $('#th_extras_reset_place').on('click', () => {
        own.left = null;
        own.top = null;
        saveSettings();
        panel.applyLayout();
    });
    showStatus();
}

function reconnect() {
    state.character = null;
    panel.setTiles([]);
    group.reset(); // another server: it has none of our avatars
    connection.toastShown = false;
    panel.setFeed(null);
    connection.check().then((up) => up && refresh({ force: true }));
}

function refreshFeed() {
    panel.setFeed(null);
    if (active() && connection.up && group.active) {
        showTiles(); // new URLs: new streams
    } else if (active() && connection.up && state.character) {
        showFeed();
    }
}

// -- start -----------------------------------------------------------------------------------------------

const panel = new Panel({
    layout: () => settings(),
    save: (layout) => {
        Object.assign(settings(), layout);
        if ('size' in layout) {
            $('#th_extras_size').val(layout.size);
            $('#th_extras_size_value').text(layout.size);
        }
        saveSettings();
    },
    onClose: () => {
        setEnabled(false);
        toast('info', 'Avatar hidden. /th on (or Extensions → Talkinghead) shows it again.');
    },
    onTileError: () => streamBroke(),
});

const feed = { since: 0, failures: 0, timer: null, toastShown: false };

/** Show the stream in the <img> (a no-op when it already shows it). */
function showFeed() {
    const url = feedUrl();
    if (panel.img.getAttribute('src') !== url) {
        feed.since = Date.now();
        panel.setFeed(url);
    }
}

panel.img.addEventListener('error', () => {
    if (panel.streaming) {
        panel.setFeed(null);
        streamBroke();
    }
});

/** A stream broke (the panel's, or a group member's tile): the server stopped (the connection finds out and
 * retries), or the stream itself fails. Reconnect with back-off, never in a tight loop; a stream that ran a
 * while starts over at 1 s. */
function streamBroke() {
    if (!active() || feed.timer) {
        return;
    }
    if (Date.now() - feed.since > 10000) {
        feed.failures = 0;
    }
    feed.failures += 1;
    panel.setStatus('The stream stopped; reconnecting…');
    if (feed.failures === 3 && !feed.toastShown) {
        feed.toastShown = true;
        toast('warning', `The avatar stream from ${server.baseUrl} keeps failing; see the server's log. Retrying.`);
    }
    const delay = Math.min(60, 2 ** (feed.failures - 1)) * 1000;
    feed.timer = setTimeout(async () => {
        feed.timer = null;
        if (await connection.check()) {
            panel.setStatus('');
            refresh({ force: true });
        }
    }, delay);
}

const HEARTBEAT_MS = 10000;

/** Every 10 s while the avatar shows: is the server still there (a closed stream does not always say so),
 * and still animating (another tab's hide, or a restarted server, may have paused or replaced it)? */
async function heartbeat() {
    if (!active() || !connection.up || !showing() || state.loading === null) {
        return;
    }
    if (group.active) {
        // A restarted server has lost the members' avatars: make them again.
        const response = await call('/api/talkinghead/avatars', {}, { quiet: true }).catch(() => null);
        const listed = response ? await response.json().catch(() => null) : null;
        if (Array.isArray(listed?.avatars)) {
            const present = new Set(listed.avatars.map((a) => a.id));
            const lost = group.ids().filter((id) => !present.has(id));
            if (lost.length) {
                group.forget(lost);
                refresh();
            }
        }
        return;
    }
    const response = await call('/api/talkinghead/stats', {}, { quiet: true }).catch(() => null);
    const stats = response ? await response.json().catch(() => null) : null;
    if (stats && stats.state === 'paused' && active()) {
        refresh({ force: true });
    }
}

function init() {
    const c = context();
    const events = c.eventTypes || c.event_types;
    const on = (name, handler) => name && c.eventSource.on(name, handler);
    on(events.CHAT_CHANGED, () => {
        state.speakerAvatar = null;
        state.expression = null;
        state.memberExpressions.clear();
        refresh();
    });
    on(events.GROUP_UPDATED, () => refresh());
    on(events.GROUP_MEMBER_DRAFTED, (characterId) => {
        const character = context().characters?.[characterId];
        if (character) {
            state.speakerAvatar = character.avatar;
            refresh();
        }
    });
    on(events.MESSAGE_RECEIVED, (id) => onCharacterMessage(id));
    on(events.GENERATION_STARTED, onGenerationStarted);
    on(events.STREAM_TOKEN_RECEIVED, pollStreaming);
    on(events.GENERATION_ENDED, onGenerationEnded);
    on(events.GENERATION_STOPPED, onGenerationEnded);
    speech.attach(c.eventSource, events); // TTS job events (1.17+); #tts_audio alone before
    on(events.APP_READY, () => {
        registerSlashCommand();
        refresh();
    });
    document.addEventListener('visibilitychange', onVisibilityChange);
    // Closing the page: the members' avatars go (keepalive requests outlive the page).
    window.addEventListener('pagehide', () => group.clear().catch(() => {}));
    // Visual Novel mode on or off (/vn, User Settings): SillyTavern marks it on <body>.
    let visualNovel = visualNovelOn();
    new MutationObserver(() => {
        if (visualNovelOn() !== visualNovel) {
            visualNovel = visualNovelOn();
            refresh();
        }
    }).observe(document.body, { attributes: true, attributeFilter: ['class'] });
    let expressionTimer = null;
    new MutationObserver((mutations) => {
        if (mutations.some((m) => m.addedNodes.length)) {
            dropStrayFeeds(); // at once: a copy of the stream's <img> opens a second stream
        }
        if (mutations.every((m) => panel.root.contains(m.target) || m.target === panel.img)) {
            return; // our own panel moving
        }
        clearTimeout(expressionTimer);
        expressionTimer = setTimeout(onExpressionChanged, 100);
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['src', 'style', 'data-expression'] });
    setInterval(heartbeat, HEARTBEAT_MS);
    registerSlashCommand();
    addSettingsUi().catch((error) => console.warn('[talkinghead] settings UI', error));
    refresh();
    // For /th status, debugging and tests.
    window.TalkingheadExtras = { state, settings, connection, server, speech, panel, group, refresh, version: VERSION };
}

init();
