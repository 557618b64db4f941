// The live event feed of the whole session: one tokenEvents subscription that starts at
// sign-in (replaying the last hour) and resumes after the last event it saw whenever the
// connection drops, so no event is lost or shown twice. Pages subscribe to changes.

import { Subscription } from './ws.js';
import { isFailure } from './dom.js';

const QUERY = `subscription LiveFeed($after: ID, $since: DateTime) {
  tokenEvents(after: $after, since: $since) {
    id kind occurredAt platform
    account { id username platform status }
    error { code message action }
  }
}`;

const LIMIT = 500;

export const feed = {
  events: [],
  state: 'idle',
  detail: null,
  lastId: null,
  unseenFailures: 0,
  seen: new Set(),
  listeners: new Set(),
  subscription: null,
  startedAt: null,

  start() {
    if (this.subscription) return;
    this.startedAt = new Date(Date.now() - 3600 * 1000).toISOString();
    this.subscription = new Subscription(
      QUERY,
      () => (this.lastId ? { after: this.lastId } : { since: this.startedAt }),
      {
        next: (data) => this.add(data.tokenEvents),
        status: (state, detail) => {
          this.state = state;
          this.detail = detail;
          this.emit(null);
        },
      },
    ).start();
  },

  stop() {
    if (this.subscription) this.subscription.stop();
    this.subscription = null;
    this.events = [];
    this.seen.clear();
    this.lastId = null;
    this.unseenFailures = 0;
    this.state = 'idle';
  },

  add(event) {
    if (!event || this.seen.has(event.id)) return;
    this.seen.add(event.id);
    this.lastId = event.id;
    this.events.unshift(event);
    if (this.events.length > LIMIT) {
      for (const old of this.events.splice(LIMIT)) this.seen.delete(old.id);
    }
    if (isFailure(event.kind)) this.unseenFailures += 1;
    this.emit(event);
  },

  emit(event) {
    for (const listener of this.listeners) listener(event);
  },

  /** Calls `listener(eventOrNull)` on every change; returns the unsubscribe function. */
  listen(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  },
};
