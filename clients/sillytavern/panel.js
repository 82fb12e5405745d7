// The avatar panel: a floating box with the live stream, moved by its header, resized by its corner,
// position and size remembered. It can also lend its <img> to Character Expressions' sprite holder. In a
// group chat it shows tiles instead, side by side: one per member shown, each with its own stream.

const BLANK = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';
const MIN_SIZE = 96;
const MAX_SIZE = 1024;

export class Panel {
    /**
     * @param {object} options
     * @param {() => {size: number, left: number|null, top: number|null}} options.layout saved layout
     * @param {(layout: {size?: number, left?: number, top?: number}) => void} options.save
     * @param {() => void} options.onClose the × button
     * @param {(key: string) => void} [options.onTileError] a tile's stream broke (it is blanked)
     */
    constructor({ layout, save, onClose, onTileError = () => {} }) {
        this.layout = layout;
        this.save = save;
        this.onTileError = onTileError;
        this.tiles = new Map(); // key → {root, img}, in the order shown
        this.root = document.createElement('div');
        this.root.id = 'talkinghead_extras_panel';
        this.root.className = 'th-extras-panel';
        this.root.innerHTML = `
            <div class="th-extras-header" title="Drag to move">
                <span class="th-extras-title fa-solid fa-grip"></span>
                <span class="th-extras-name"></span>
                <span class="th-extras-close fa-solid fa-xmark" title="Hide the avatar (/th on shows it again)"></span>
            </div>
            <div class="th-extras-stage"></div>
            <div class="th-extras-status"></div>
            <div class="th-extras-resize" title="Drag to resize"></div>`;
        this.stage = this.root.querySelector('.th-extras-stage');
        this.nameLabel = this.root.querySelector('.th-extras-name');
        this.statusLabel = this.root.querySelector('.th-extras-status');
        this.img = document.createElement('img');
        this.img.id = 'talkinghead_extras_feed';
        this.img.alt = 'live avatar';
        this.img.crossOrigin = 'anonymous'; // the feed sends CORS headers: its pixels stay readable
        this.img.draggable = false;
        this.img.src = BLANK;
        this.stage.appendChild(this.img);
        this.root.querySelector('.th-extras-close').addEventListener('click', () => onClose());
        this.dragging(this.root.querySelector('.th-extras-header'), (dx, dy, start) => {
            this.place(start.left + dx, start.top + dy);
        }, () => ({ left: this.root.offsetLeft, top: this.root.offsetTop }));
        this.dragging(this.root.querySelector('.th-extras-resize'), (dx, dy, start) => {
            this.resize(start.size + Math.max(dx, dy));
        }, () => ({ size: this.layout().size }));
        this.hidden = true;
        this.root.style.display = 'none';
        document.body.appendChild(this.root);
        this.onWindowResize = () => {
            this.fitTiles();
            this.place(this.root.offsetLeft, this.root.offsetTop, false);
        };
        window.addEventListener('resize', this.onWindowResize);
        this.applyLayout();
    }

    applyLayout() {
        const { size, left, top } = this.layout();
        this.root.style.setProperty('--th-extras-size', `${clamp(size, MIN_SIZE, MAX_SIZE)}px`);
        this.fitTiles();
        if (left === null || left === undefined || top === null || top === undefined) {
            this.root.style.left = '';
            this.root.style.top = '';
            this.root.classList.add('th-extras-default-place');
        } else {
            this.root.classList.remove('th-extras-default-place');
            this.place(left, top, false);
        }
    }

    place(left, top, persist = true) {
        if (this.hidden) {
            return;
        }
        const maxLeft = Math.max(0, window.innerWidth - this.root.offsetWidth);
        const maxTop = Math.max(0, window.innerHeight - this.root.offsetHeight);
        left = clamp(Math.round(left), 0, maxLeft);
        top = clamp(Math.round(top), 0, maxTop);
        this.root.classList.remove('th-extras-default-place');
        this.root.style.left = `${left}px`;
        this.root.style.top = `${top}px`;
        if (persist) {
            this.save({ left, top });
        }
    }

    resize(size) {
        size = clamp(Math.round(size), MIN_SIZE, Math.min(MAX_SIZE, window.innerWidth, window.innerHeight));
        this.root.style.setProperty('--th-extras-size', `${size}px`);
        this.save({ size });
        this.fitTiles();
    }

    /** Pointer drag on `handle`: move(dx, dy, startState) while the button is down. */
    dragging(handle, move, startState) {
        handle.addEventListener('pointerdown', (down) => {
            if (down.button !== 0 || down.target.closest('.th-extras-close')) {
                return;
            }
            down.preventDefault();
            handle.setPointerCapture(down.pointerId);
            const start = startState();
            const onMove = (event) => move(event.clientX - down.clientX, event.clientY - down.clientY, start);
            const onUp = () => {
                handle.removeEventListener('pointermove', onMove);
                handle.removeEventListener('pointerup', onUp);
                handle.removeEventListener('pointercancel', onUp);
            };
            handle.addEventListener('pointermove', onMove);
            handle.addEventListener('pointerup', onUp);
            handle.addEventListener('pointercancel', onUp);
        });
    }

    show(visible) {
        visible = Boolean(visible);
        if (visible === !this.hidden) {
            return;
        }
        this.hidden = !visible;
        this.root.style.display = visible ? '' : 'none';
        if (visible) {
            this.applyLayout();
        }
    }

    setName(name) {
        this.nameLabel.textContent = name || '';
    }

    setStatus(text) {
        this.statusLabel.textContent = text || '';
        this.statusLabel.style.display = text ? '' : 'none';
    }

    /** Show `url` in the <img> (a no-op when it already does); null closes the stream. */
    setFeed(url) {
        const target = url || BLANK;
        if (this.img.getAttribute('src') !== target) {
            this.img.src = target;
        }
    }

    get streaming() {
        return this.img.getAttribute('src') !== BLANK;
    }

    /**
     * Group chats: one tile per member, in this order, each showing its own stream; [] goes back to the one
     * <img>. A tile already showing its URL is left alone (its stream goes on); a tile dropped is blanked
     * first, which closes its stream.
     * @param {{key: string, name: string, url: string|null, speaking?: boolean}[]} tiles
     * @returns {number} how many streams it opened
     */
    setTiles(tiles) {
        let opened = 0;
        const count = this.tiles.size;
        const keys = new Set(tiles.map((t) => t.key));
        for (const [key, tile] of this.tiles) {
            if (!keys.has(key)) {
                tile.img.src = BLANK;
                tile.root.remove();
                this.tiles.delete(key);
            }
        }
        for (const { key, name, url, speaking } of tiles) {
            let tile = this.tiles.get(key);
            if (!tile) {
                tile = this.makeTile(key);
                this.tiles.set(key, tile);
            }
            this.stage.appendChild(tile.root); // in the order given
            tile.name.textContent = name || '';
            tile.img.alt = `live avatar of ${name}`;
            tile.root.classList.toggle('th-extras-speaking', Boolean(speaking));
            const target = url || BLANK;
            if (tile.img.getAttribute('src') !== target) {
                tile.img.src = target;
                opened += url ? 1 : 0;
            }
        }
        this.root.classList.toggle('th-extras-group', this.tiles.size > 0);
        if (this.tiles.size !== count) {
            this.applyLayout(); // wider or narrower: the saved place, kept inside the window
        }
        return opened;
    }

    makeTile(key) {
        const root = document.createElement('div');
        root.className = 'th-extras-tile';
        root.dataset.key = key;
        const img = document.createElement('img');
        img.className = 'th-extras-member-feed';
        img.dataset.key = key;
        img.crossOrigin = 'anonymous';
        img.draggable = false;
        img.src = BLANK;
        const name = document.createElement('span');
        name.className = 'th-extras-tile-name';
        root.append(img, name);
        img.addEventListener('error', () => {
            if (img.getAttribute('src') !== BLANK && this.tiles.get(key)?.img === img) {
                img.src = BLANK;
                this.onTileError(key);
            }
        });
        return { root, img, name };
    }

    /** Tiles as large as the panel size, smaller when they would not fit the window side by side. */
    fitTiles() {
        const count = Math.max(1, this.tiles.size);
        const size = clamp(this.layout().size, MIN_SIZE, MAX_SIZE);
        const fit = Math.floor((window.innerWidth - 16) / count);
        this.root.style.setProperty('--th-extras-tile-size', `${Math.max(48, Math.min(size, fit))}px`);
    }

    /** Put the <img> into `holder` (Character Expressions' sprite holder), or back into the panel. */
    lendImageTo(holder) {
        const parent = holder || this.stage;
        if (this.img.parentElement !== parent) {
            parent.appendChild(this.img);
        }
        this.img.classList.toggle('th-extras-in-expressions', Boolean(holder));
    }

    remove() {
        window.removeEventListener('resize', this.onWindowResize);
        this.setTiles([]);
        this.setFeed(null);
        this.img.remove();
        this.root.remove();
    }
}

function clamp(value, low, high) {
    return Math.min(high, Math.max(low, Number.isFinite(value) ? value : low));
}
