// Lip-sync with SillyTavern's TTS: its extension plays every clip through one <audio id="tts_audio"> and
// emits no event of its own, so we listen to that element's media events (they do not bubble: capture on
// the document) and send each clip's bytes to the server once, with how far playback has got.

const SILENCE = /\/sounds\/silence\.mp3(\?|$)/; // SillyTavern plays this to unlock audio; not speech

export class SpeechWatcher {
    /**
     * @param {object} hooks
     * @param {() => boolean} hooks.enabled lip-sync wanted now (extension on, tab shown, server up)
     * @param {(bytes: ArrayBuffer, offsetMs: number) => Promise<'ok'|'unsupported'|'rejected'>} hooks.send
     * @param {(speaking: boolean, synced: boolean) => void} hooks.changed speaking state for the talking logic
     * @param {string} [selector] the audio element
     */
    constructor({ enabled, send, changed }, selector = '#tts_audio') {
        this.enabled = enabled;
        this.send = send;
        this.changed = changed;
        this.selector = selector;
        this.current = null; // src of the clip being spoken, while it plays
        this.synced = false; // the server has its track (else the generic talking mouth stands in)
        this.unsupported = false; // the server has no /lipsync (older version): talking only
        this.bytes = { src: null, data: null }; // the last clip's bytes (a paused clip resumed is re-sent)
        this.handler = (event) => this.onEvent(event);
        for (const type of ['play', 'playing', 'pause', 'ended', 'emptied']) {
            document.addEventListener(type, this.handler, true);
        }
    }

    get speaking() {
        return this.current !== null;
    }

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
            this.changed(true, false);
            return;
        }
        let result = 'rejected';
        try {
            const data = await this.fetchBytes(src);
            if (this.current !== src || element.paused) {
                return; // stopped or replaced while we fetched it
            }
            result = await this.send(data, Math.max(0, element.currentTime * 1000));
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
        this.changed(true, this.synced);
    }

    stopped(element, type) {
        if (this.current === null) {
            return;
        }
        if (type === 'emptied' || type === 'pause' || type === 'ended') {
            this.current = null;
            this.synced = false;
            this.changed(false, false);
        }
    }

    /** The clip's bytes: a data: URL, a blob: URL or a URL SillyTavern serves (fetch reads them all). */
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
        for (const type of ['play', 'playing', 'pause', 'ended', 'emptied']) {
            document.removeEventListener(type, this.handler, true);
        }
    }
}
