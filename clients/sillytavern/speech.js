// Lip-sync and talking with SillyTavern's TTS, on every version and with every provider.
//
// SillyTavern 1.17 and newer announce each TTS job: TTS_JOB_STARTED {messageId, characterName, text, voiceId}
// before the provider generates, TTS_AUDIO_READY {…, audio, mimeType} with the clip (a Blob; an empty string
// when the provider played it itself) when it is queued, TTS_JOB_COMPLETE after it. They say when a clip is
// *made*, not when it *plays*: most providers' clips then play, queued, through one <audio id="tts_audio">.
// So: the clip's bytes come from TTS_AUDIO_READY's Blob (events first), and the moment it plays, its offset
// and its playback rate from #tts_audio (media events, captured on the document: they do not bubble). Older
// versions (no TTS events) and clips no event announced: the bytes are read from #tts_audio's src (fallback).
// Each clip is sent to the server once.
//
// Providers that play without #tts_audio (the browser's "System" voices; providers streaming through Web
// Audio, such as TTS WebUI with streaming on) have no clip to follow: the mouth talks from TTS_JOB_STARTED
// to TTS_JOB_COMPLETE (and while the browser's speechSynthesis speaks, on versions without the events). A
// provider that plays itself and still hands over a real clip gets a lip-sync track from that clip.

const SILENCE = /\/sounds\/silence\.mp3(\?|$)/; // SillyTavern plays this to unlock audio; not speech
const SYNTH_POLL_MS = 250;
const READY_KEEP = 16; // clips announced and not yet played (a long queue of generated clips)
// A job whose provider fails emits no TTS_JOB_COMPLETE: talking from the events ends by itself after the
// time its text takes to say (~15 characters a second, slowly) and some slack.
const JOB_MS_PER_CHAR = 90;
const JOB_SLACK_MS = 5000;
const JOB_MAX_MS = 180000;
// A streaming provider's job completes when its stream has arrived, while its audio still plays: talking
// goes on for about the time the text takes to say (~15 characters a second at rate 1).
const SPEECH_MS_PER_CHAR = 65;
/** Providers that play their audio themselves: always, or with their `streaming` setting on. Others are
 * learned: a TTS_AUDIO_READY with an empty string instead of a clip. */
const SELF_PLAYING = new Set(['System']);
const SELF_PLAYING_WHEN_STREAMING = new Set(['TTS WebUI']);

export class SpeechWatcher {
    /**
     * @param {object} hooks
     * @param {() => boolean} hooks.enabled lip-sync wanted now (extension on, tab shown, server up)
     * @param {(bytes: ArrayBuffer, offsetMs: number, rate: number) => Promise<'ok'|'unsupported'|'rejected'>} hooks.send
     * @param {(speaking: boolean, synced: boolean) => void} hooks.changed speaking state for the talking logic
     * @param {() => object} [hooks.ttsSettings] SillyTavern's TTS settings (extension_settings.tts)
     * @param {(characterName: string|null) => Promise<void>} [hooks.beforeSpeak] a character is about to speak
     * @param {string} [selector] the audio element
     */
    constructor({ enabled, send, changed, ttsSettings = () => ({}), beforeSpeak = async () => {} }, selector = '#tts_audio') {
        this.enabled = enabled;
        this.send = send;
        this.changed = changed;
        this.ttsSettings = ttsSettings;
        this.beforeSpeak = beforeSpeak; // (characterName) => Promise: group chats show who speaks first
        this.selector = selector;
        this.current = null; // src of the #tts_audio clip being spoken, while it plays
        this.synced = false; // the server has that clip's track (else the generic talking mouth stands in)
        this.unsupported = false; // the server has no /lipsync (older version): talking only
        this.bytes = { src: null, data: null }; // the last clip's bytes (a paused clip resumed is re-sent)
        this.events = false; // SillyTavern emits TTS job events (1.17+)
        this.ready = []; // TTS_AUDIO_READY clips not yet played: {blob, size, characterName, used}
        this.jobs = 0; // TTS jobs between TTS_JOB_STARTED and TTS_JOB_COMPLETE
        this.completed = 0; // TTS_JOB_COMPLETE events seen (tests)
        this.jobTalking = false; // a provider that plays itself is speaking (from the job events)
        this.jobSynced = false; // … and its clip's track went to the server
        this.synthTalking = false; // the browser's speechSynthesis speaks
        this.learned = new Set(); // providers seen playing themselves (TTS_AUDIO_READY without a clip)
        this.silenceSize = null; // bytes of /sounds/silence.mp3 (what "System" hands over after speaking)
        this.speaker = null; // characterName of the TTS job or clip now speaking (group chats)
        /** What was sent, newest last: {source: 'event'|'element'|'event-direct', rate, size, offsetMs} (tests). */
        this.sent = [];
        this.reported = { speaking: false, synced: false };
        this.handler = (event) => this.onEvent(event);
        for (const type of ['play', 'playing', 'pause', 'ended', 'emptied']) {
            document.addEventListener(type, this.handler, true);
        }
        this.synthTimer = setInterval(() => this.pollSynth(), SYNTH_POLL_MS);
    }

    /** Subscribe to SillyTavern's TTS job events where they exist (1.17+); true when they do. */
    attach(eventSource, eventTypes) {
        if (!eventSource || !eventTypes?.TTS_JOB_STARTED || !eventTypes.TTS_AUDIO_READY || !eventTypes.TTS_JOB_COMPLETE) {
            return false;
        }
        eventSource.on(eventTypes.TTS_JOB_STARTED, (data) => this.onJobStarted(data));
        eventSource.on(eventTypes.TTS_AUDIO_READY, (data) => this.onAudioReady(data));
        eventSource.on(eventTypes.TTS_JOB_COMPLETE, (data) => this.onJobComplete(data));
        this.events = true;
        return true;
    }

    get speaking() {
        return this.current !== null || this.jobTalking || this.synthTalking;
    }

    get isSynced() {
        return (this.current !== null && this.synced) || (this.current === null && this.jobTalking && this.jobSynced);
    }

    notify(force = false) {
        const speaking = this.speaking;
        const synced = speaking && this.isSynced;
        if (!force && speaking === this.reported.speaking && synced === this.reported.synced) {
            return;
        }
        this.reported = { speaking, synced };
        this.changed(speaking, synced);
    }

    // -- TTS job events (1.17+) -----------------------------------------------------------------------

    provider() {
        return String(this.ttsSettings()?.currentProvider || '');
    }

    /** The current provider plays its audio itself (not through #tts_audio). */
    playsItself() {
        const settings = this.ttsSettings() || {};
        const provider = this.provider();
        return Boolean(provider) && (SELF_PLAYING.has(provider) || this.learned.has(provider)
            || (SELF_PLAYING_WHEN_STREAMING.has(provider) && settings[provider]?.streaming === true));
    }

    async onJobStarted(data) {
        this.jobs += 1;
        if (this.playsItself()) {
            clearTimeout(this.jobTimer);
            this.jobSpeechEnd = Date.now() + SPEECH_MS_PER_CHAR * String(data?.text ?? '').length / this.rateSetting();
            const ms = Math.min(JOB_MAX_MS, JOB_SLACK_MS + JOB_MS_PER_CHAR * String(data?.text ?? '').length / this.rateSetting());
            this.jobTimer = setTimeout(() => this.endJobTalking(), ms);
        }
        if (this.playsItself() && !this.jobTalking) {
            this.jobTalking = true;
            this.jobSynced = false;
            this.speaker = data?.characterName ?? null;
            await this.beforeSpeak(this.speaker);
            this.notify();
        }
    }

    async onAudioReady(data) {
        const audio = data?.audio;
        const provider = this.provider();
        if (typeof audio === 'string') {
            if (audio === '' && provider) {
                this.learned.add(provider); // it played the clip itself (streaming): talk from the events next time
            }
            return; // a URL plays through #tts_audio: the fallback reads it there
        }
        if (!(audio instanceof Blob) || audio.size === 0) {
            return;
        }
        const entry = { blob: audio, size: audio.size, characterName: data?.characterName ?? null, used: false };
        this.ready.push(entry);
        if (this.ready.length > READY_KEEP) {
            this.ready.splice(0, this.ready.length - READY_KEEP);
        }
        if (await this.isSilence(audio.size)) {
            entry.used = true; // "System" hands over silence after speaking: nothing to follow
            return;
        }
        if (!SELF_PLAYING.has(provider)) {
            this.learned.delete(provider); // a real clip: it plays through #tts_audio (its streaming is off now)
        }
        if (this.jobTalking && this.current === null && !entry.used && this.enabled() && !this.unsupported) {
            // A provider that played (is playing) the clip itself and hands it over: follow it from now.
            entry.used = true;
            entry.sentDirect = true;
            await this.beforeSpeak(entry.characterName);
            const result = await this.sendClip(await audio.arrayBuffer(), 0, this.rateSetting(), 'event-direct');
            this.jobSynced = result === 'ok' && this.jobTalking;
            this.notify();
        }
    }

    onJobComplete() {
        this.completed += 1;
        this.jobs = Math.max(0, this.jobs - 1);
        if (this.jobs > 0 || !this.jobTalking) {
            return;
        }
        // "System" resolves when the voice has finished; a stream may still be playing.
        const rest = SELF_PLAYING.has(this.provider()) ? 0 : (this.jobSpeechEnd ?? 0) - Date.now();
        clearTimeout(this.jobTimer);
        if (rest > 0) {
            this.jobTimer = setTimeout(() => this.endJobTalking(), rest);
        } else {
            this.endJobTalking();
        }
    }

    endJobTalking() {
        clearTimeout(this.jobTimer);
        this.jobs = 0;
        if (this.jobTalking) {
            this.jobTalking = false;
            this.jobSynced = false;
            this.notify();
        }
    }

    /** SillyTavern's TTS playback-rate setting (what #tts_audio plays at). */
    rateSetting() {
        const rate = Number(this.ttsSettings()?.playback_rate);
        return Number.isFinite(rate) && rate > 0 ? rate : 1;
    }

    pollSynth() {
        const speaking = Boolean(window.speechSynthesis?.speaking) && this.enabled();
        if (speaking !== this.synthTalking) {
            this.synthTalking = speaking;
            this.notify();
        }
    }

    // -- #tts_audio ---------------------------------------------------------------------------------------

    onEvent(event) {
        const element = event.target;
        if (!(element instanceof HTMLMediaElement) || !element.matches(this.selector)) {
            return;
        }
        if (event.type === 'play' || event.type === 'playing') {
            this.started(element);
        } else {
            this.stopped(element, event.type);
        }
    }

    async started(element) {
        const src = element.currentSrc || element.src;
        if (!src || SILENCE.test(src) || src === location.href) {
            return;
        }
        if (this.current === src) {
            return; // 'playing' after 'play', or after a stall: the same clip goes on
        }
        this.current = src;
        this.synced = false;
        if (!this.enabled() || this.unsupported) {
            this.notify();
            return;
        }
        let result = 'rejected';
        try {
            const clip = await this.clipFor(src);
            if (this.current !== src || element.paused) {
                return; // stopped or replaced while we read it
            }
            if (clip.silent) {
                this.current = null; // the silence "System" hands over: not speech
                this.notify();
                return;
            }
            if (clip.characterName) {
                this.speaker = clip.characterName;
                await this.beforeSpeak(clip.characterName);
            }
            result = clip.alreadySent ? 'ok'
                : await this.sendClip(clip.data, Math.max(0, element.currentTime * 1000), element.playbackRate || 1, clip.source);
        } catch (error) {
            console.debug('[talkinghead] lip-sync: could not read the TTS audio', error);
        }
        if (this.current !== src) {
            return;
        }
        if (result === 'unsupported') {
            this.unsupported = true;
        }
        this.synced = result === 'ok';
        this.notify(true); // restate even when unchanged: a new clip (SillyTavern 1.12 sends start_talking too)
    }

    stopped(element, type) {
        if (this.current === null) {
            return;
        }
        if (type === 'emptied' || type === 'pause' || type === 'ended') {
            this.current = null;
            this.synced = false;
            this.notify();
        }
    }

    async sendClip(data, offsetMs, rate, source) {
        const result = await this.send(data, offsetMs, rate);
        this.sent.push({ source, rate, size: data.byteLength, offsetMs: Math.round(offsetMs), result, time: Date.now() });
        if (this.sent.length > 50) {
            this.sent.shift();
        }
        return result;
    }

    /**
     * The playing clip: the TTS_AUDIO_READY Blob it was made from (same size, the oldest not yet played), else
     * the bytes behind #tts_audio's src (a data: URL, a blob: URL or a URL SillyTavern serves).
     */
    async clipFor(src) {
        if (this.bytes.src === src) {
            return { data: this.bytes.data, source: 'element', silent: false, alreadySent: false };
        }
        const size = src.startsWith('data:') ? dataUrlSize(src) : null;
        let data = null;
        if (size === null && this.ready.some((e) => !e.used)) {
            data = await this.fetchBytes(src);
        }
        const length = size ?? data?.byteLength ?? null;
        const index = length === null ? -1 : this.ready.findIndex((e) => e.size === length && (!e.used || e.sentDirect));
        if (index >= 0) {
            const entry = this.ready[index];
            this.ready.splice(0, index + 1); // older ones were skipped (playback stopped, queue cleared)
            if (entry.used) {
                return { silent: await this.isSilence(entry.size), alreadySent: true, characterName: entry.characterName };
            }
            entry.used = true;
            data = await entry.blob.arrayBuffer();
            this.bytes = { src, data };
            return { data, source: 'event', silent: false, alreadySent: false, characterName: entry.characterName };
        }
        data = data ?? await this.fetchBytes(src);
        return { data, source: 'element', silent: await this.isSilence(data.byteLength), alreadySent: false };
    }

    /** A clip of exactly /sounds/silence.mp3's size is that file. */
    async isSilence(size) {
        if (this.silenceSize === null) {
            try {
                const response = await fetch('/sounds/silence.mp3');
                this.silenceSize = response.ok ? (await response.arrayBuffer()).byteLength : 0;
            } catch {
                this.silenceSize = 0;
            }
        }
        return this.silenceSize > 0 && size === this.silenceSize;
    }

    async fetchBytes(src) {
        if (this.bytes.src === src) {
            return this.bytes.data;
        }
        const response = await fetch(src);
        if (!response.ok) {
            throw new Error(`${response.status} reading ${src.slice(0, 80)}`);
        }
        const data = await response.arrayBuffer();
        this.bytes = { src, data };
        return data;
    }

    close() {
        clearInterval(this.synthTimer);
        for (const type of ['play', 'playing', 'pause', 'ended', 'emptied']) {
            document.removeEventListener(type, this.handler, true);
        }
    }
}

/** Decoded size of a base64 data: URL (without decoding it). */
function dataUrlSize(src) {
    const comma = src.indexOf(',');
    if (comma < 0 || !src.slice(0, comma).endsWith(';base64')) {
        return null;
    }
    const body = src.slice(comma + 1).replace(/\s+/g, '');
    const padding = body.endsWith('==') ? 2 : body.endsWith('=') ? 1 : 0;
    return Math.floor(body.length * 3 / 4) - padding;
}
