// The avatar panel: a floating box with the live stream, moved by its header, resized by its corner,
// position and size remembered. It can also lend its <img> to Character Expressions' sprite holder.

const BLANK = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';
const MIN_SIZE = 96;
const MAX_SIZE = 1024;

export class Panel {
    /**
     * @param {object} options
     * @param {() => {size: number, left: number|null, top: number|null}} options.layout saved layout
     * @param {(layout: {size?: number, left?: number, top?: number}) => void} options.save
     * @param {() => void} options.onClose the × button
     */
    constructor({ layout, save, onClose }) {
        this.layout = layout;
        this.save = save;
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
        this.onWindowResize = () => this.place(this.root.offsetLeft, this.root.offsetTop, false);
        window.addEventListener('resize', this.onWindowResize);
        this.applyLayout();
    }

    applyLayout() {
        const { size, left, top } = this.layout();
        this.root.style.setProperty('--th-extras-size', `${clamp(size, MIN_SIZE, MAX_SIZE)}px`);
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
        this.setFeed(null);
        this.img.remove();
        this.root.remove();
    }
}

function clamp(value, low, high) {
    return Math.min(high, Math.max(low, Number.isFinite(value) ? value : low));
}
