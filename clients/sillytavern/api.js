// HTTP to the talkinghead-extras server (docs/api.md): the URL and key come from the settings, every
// failure becomes a ServerError whose `kind` says what the user should check, and a connection watcher
// turns an outage into one toast and background retries with back-off.

/** Why a request failed. `kind`: unreachable | foreign (another program answers) | auth | not-enabled | missing |
 * rejected | server */
export class ServerError extends Error {
    constructor(kind, message, status = 0) {
        super(message);
        this.name = 'ServerError';
        this.kind = kind;
        this.status = status;
    }

    /** An outage (the server, its key or its modules are wrong), not a problem with one request. */
    get isOutage() {
        return this.kind === 'unreachable' || this.kind === 'foreign' || this.kind === 'auth' || this.kind === 'not-enabled';
    }
}

export class Server {
    /** @param {() => {url: string, key: string}} config read at each request (settings may change) */
    constructor(config) {
        this.config = config;
        /** The last requests, newest last (method, path, query, status): for /th status and for tests. */
        this.history = [];
    }

    get baseUrl() {
        return String(this.config().url || '').trim().replace(/\/+$/, '');
    }

    url(path, query = null) {
        const url = new URL(this.baseUrl + path);
        for (const [name, value] of Object.entries(query || {})) {
            url.searchParams.set(name, String(value));
        }
        return url.toString();
    }

    /**
     * One request. `json` sends a JSON body; `body` sends as is (FormData, bytes) with `contentType`;
     * `keepalive` lets it finish after the page closes (no body).
     * Resolves with the Response when it is 2xx, else rejects with a ServerError.
     */
    async request(path, { method = 'GET', json, body, contentType, query, keepalive = false } = {}) {
        const headers = {};
        const key = String(this.config().key || '').trim();
        if (key) {
            headers.Authorization = `Bearer ${key}`;
        }
        if (json !== undefined) {
            headers['Content-Type'] = 'application/json';
            body = JSON.stringify(json);
        } else if (contentType) {
            headers['Content-Type'] = contentType;
        }
        let url;
        try {
            url = this.url(path, query);
        } catch {
            throw new ServerError('unreachable', `"${this.baseUrl}" is not a valid URL`);
        }
        let response;
        try {
            response = await fetch(url, { method, headers, body, cache: 'no-store', keepalive });
        } catch (error) {
            this.remember(method, path, 0, query);
            throw new ServerError('unreachable', `cannot reach ${this.baseUrl} (${error?.message || error})`);
        }
        this.remember(method, path, response.status, query);
        if (response.ok) {
            return response;
        }
        let detail = '';
        try {
            const text = await response.text();
            try {
                detail = JSON.parse(text).error || text;
            } catch {
                detail = text;
            }
        } catch {
            // no body
        }
        detail = String(detail).slice(0, 300) || response.statusText;
        const kind = response.status === 401 ? 'auth'
            : response.status === 403 ? 'not-enabled'
                : response.status === 404 || response.status === 405 ? 'missing'
                    : response.status < 500 ? 'rejected' : 'server';
        throw new ServerError(kind, `${method} ${path}: ${response.status} ${detail}`, response.status);
    }

    async json(path, options) {
        return (await this.request(path, options)).json();
    }

    remember(method, path, status, query = null) {
        this.history.push({ time: Date.now(), method, path, status, ...(query ? { query: { ...query } } : {}) });
        if (this.history.length > 100) {
            this.history.splice(0, this.history.length - 100);
        }
    }
}

const FIRST_RETRY_S = 2;
const MAX_RETRY_S = 60;

/** The server identifies itself in /api/modules (SillyTavern-Extras and raven-server answer on port 5100 too). */
export const SERVER_NAME = 'talkinghead-extras';

/**
 * Knows whether the server is usable (answers /api/modules as talkinghead-extras with the talkinghead
 * module, accepts the key). While it is
 * not, requests are not sent; it retries with back-off (2, 4, 8 … 60 s) and calls onUp when it is back.
 * One toast per outage, one when it comes back.
 */
export class Connection {
    constructor(server, { onUp = () => {}, onStatus = () => {}, toast = null } = {}) {
        this.server = server;
        this.onUp = onUp;
        this.onStatus = onStatus;
        this.toast = toast;
        this.state = 'unknown'; // unknown | checking | up | down | off
        this.modules = [];
        this.version = null;
        this.retryDelay = FIRST_RETRY_S;
        this.timer = null;
        this.toastShown = false;
        this.lastError = null;
        this.checking = null;
    }

    get up() {
        return this.state === 'up';
    }

    /** Check now (a new URL or key, the tab shown again, the extension switched on); resolves up or not.
     * onUp is called only when a background retry finds the server back. */
    async check() {
        if (this.checking) {
            return this.checking;
        }
        this.clearTimer();
        this.state = 'checking';
        this.onStatus(this.describe());
        this.checking = (async () => {
            try {
                const data = await this.identify();
                const modules = data.modules;
                if (!modules.includes('talkinghead')) {
                    throw new ServerError('not-enabled', `the server at ${this.server.baseUrl} runs without the talkinghead module`);
                }
                this.modules = modules;
                this.version = data.version;
                this.succeeded();
                return true;
            } catch (error) {
                this.failed(error);
                return false;
            } finally {
                this.checking = null;
            }
        })();
        return this.checking;
    }

    /** GET /api/modules from talkinghead-extras, else a 'foreign' ServerError that says what answers. */
    async identify() {
        const base = this.server.baseUrl;
        let data;
        try {
            data = await this.server.json('/api/modules');
        } catch (error) {
            if (error instanceof ServerError && error.isOutage) {
                throw error;
            }
            const what = error instanceof ServerError ? `${error.status} on /api/modules` : 'no JSON from /api/modules';
            throw new ServerError('foreign', `another program answers at ${base} (${what})`);
        }
        if (data?.server !== SERVER_NAME || !Array.isArray(data?.modules)) {
            const what = Array.isArray(data?.modules)
                ? `modules ${data.modules.join(', ') || 'none'}, but no "server": "${SERVER_NAME}": SillyTavern-Extras, or an older talkinghead-extras: update it`
                : typeof data?.server === 'string' ? `it says it is ${data.server}` : 'an unknown answer to /api/modules';
            const error = new ServerError('foreign', `another program answers at ${base} (${what})`);
            error.detail = what;
            throw error;
        }
        return data;
    }

    /** A request failed: an outage takes the connection down (one toast, retries); other errors pass. */
    failed(error) {
        if (!(error instanceof ServerError) || !error.isOutage) {
            return false;
        }
        const wasUp = this.state === 'up';
        this.state = 'down';
        this.lastError = error;
        if (!this.toastShown && this.toast) {
            this.toastShown = true;
            this.toast('warning', adviceFor(error, this.server.baseUrl));
        }
        if (wasUp) {
            this.retryDelay = FIRST_RETRY_S;
        }
        this.schedule();
        this.onStatus(this.describe());
        return true;
    }

    succeeded() {
        this.state = 'up';
        this.lastError = null;
        this.retryDelay = FIRST_RETRY_S;
        this.clearTimer();
        if (this.toastShown && this.toast) {
            this.toast('success', `Connected to the talkinghead server at ${this.server.baseUrl}.`);
        }
        this.toastShown = false;
        this.onStatus(this.describe());
    }

    /** Stop retrying (the extension is off or the tab hidden); check() starts again. */
    stop() {
        this.clearTimer();
        this.state = 'off';
        this.onStatus(this.describe());
    }

    schedule() {
        this.clearTimer();
        const delay = this.retryDelay;
        this.retryDelay = Math.min(MAX_RETRY_S, this.retryDelay * 2);
        this.nextRetry = Date.now() + delay * 1000;
        this.timer = setTimeout(() => {
            this.timer = null;
            this.check().then((up) => up && this.onUp());
        }, delay * 1000);
    }

    clearTimer() {
        if (this.timer) {
            clearTimeout(this.timer);
            this.timer = null;
        }
    }

    describe() {
        switch (this.state) {
            case 'up': return `connected to ${SERVER_NAME} ${this.version ?? ''} at ${this.server.baseUrl}`.replace('  ', ' ');
            case 'checking': return `connecting to ${this.server.baseUrl}…`;
            case 'off': return 'off';
            case 'down': {
                const seconds = Math.max(0, Math.round(((this.nextRetry || 0) - Date.now()) / 1000));
                return `${adviceFor(this.lastError, this.server.baseUrl)} (retrying in ${seconds} s)`;
            }
            default: return 'not connected yet';
        }
    }
}

/** What the user should check, for an outage. */
export function adviceFor(error, baseUrl) {
    switch (error?.kind) {
        case 'auth':
            return `The talkinghead server at ${baseUrl} refused the API key. Copy the key from the server's ` +
                'api_key.txt into Extensions → Talkinghead → API key (or the Extras API key).';
        case 'foreign':
            return `Another program answers at ${baseUrl}, not the talkinghead-extras server` +
                `${error.detail ? ` (${error.detail})` : ''}. Port 5100 is also the default of SillyTavern-Extras ` +
                'and raven-server: stop that program, or start talkinghead-extras on another port (--port 5101) ' +
                'and set that URL in Extensions → Talkinghead → Server URL.';
        case 'not-enabled':
            return `The server at ${baseUrl} runs without the talkinghead module: start it with ` +
                '--enable-modules=classify,talkinghead.';
        default:
            return `The talkinghead server is not reachable at ${baseUrl}. Is it running ` +
                '(python server.py --enable-modules=classify,talkinghead)? Check the server URL in ' +
                'Extensions → Talkinghead. Retrying in the background.';
    }
}
