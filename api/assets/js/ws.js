// A small graphql-transport-ws client (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md)
// for one subscription that survives dropped connections: after a close it reconnects
// with backoff and resubscribes with the variables `variables()` returns then (the caller
// puts the last event id in `after`, so the server replays what was missed).

import { connectionParams } from './gql.js';

export class Subscription {
  /**
   * @param {string} query the subscription document
   * @param {() => object} variables called at every (re)subscribe
   * @param {{next: (data) => void, error?: (errors) => void, status?: (state, detail) => void}} handlers
   */
  constructor(query, variables, handlers) {
    this.query = query;
    this.variables = variables;
    this.handlers = handlers;
    this.socket = null;
    this.stopped = false;
    this.retries = 0;
    this.timer = null;
    this.reconnects = 0;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    window.clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, 'done');
    this.socket = null;
  }

  /** Closes the socket as a network failure would (used by tests and "Reconnect"). */
  drop() {
    if (this.socket) this.socket.close(4000, 'dropped by the client');
  }

  status(state, detail) {
    if (this.handlers.status) this.handlers.status(state, detail);
  }

  connect() {
    const url = `${window.location.origin.replace(/^http/, 'ws')}/graphql/ws`;
    const socket = new WebSocket(url, 'graphql-transport-ws');
    this.socket = socket;
    this.status(this.reconnects ? 'reconnecting' : 'connecting');
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: connectionParams() }));
    });
    socket.addEventListener('message', (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch (_) { return; }
      switch (frame.type) {
        case 'connection_ack':
          this.retries = 0;
          socket.send(JSON.stringify({
            id: '1', type: 'subscribe', payload: { query: this.query, variables: this.variables() },
          }));
          this.status('live', this.reconnects);
          break;
        case 'ping':
          socket.send(JSON.stringify({ type: 'pong' }));
          break;
        case 'next':
          if (frame.payload.errors && frame.payload.errors.length) {
            this.failed(frame.payload.errors);
          } else if (frame.payload.data) {
            this.handlers.next(frame.payload.data);
          }
          break;
        case 'error':
          this.failed(frame.payload);
          break;
        case 'complete':
          // The server ended the stream (e.g. it fell behind): resubscribe from the last event.
          socket.close(4000, 'resubscribe');
          break;
        default:
          break;
      }
    });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) {
        this.status('stopped');
        return;
      }
      if (event.code === 4401 || event.code === 4403) {
        this.status('denied', event.reason || 'the server refused this session');
        return;
      }
      this.reconnects += 1;
      const delay = Math.min(15000, 500 * 2 ** this.retries);
      this.retries += 1;
      this.status('reconnecting', delay);
      this.timer = window.setTimeout(() => this.connect(), delay);
    });
  }

  failed(errors) {
    const list = Array.isArray(errors) ? errors : [errors];
    const code = list[0] && list[0].extensions && list[0].extensions.code;
    if (this.handlers.error) this.handlers.error(list);
    if (code === 'UNAUTHENTICATED' || code === 'FORBIDDEN') {
      this.stop();
      this.status('denied', list[0].message);
    } else if (this.socket) {
      // SUBSCRIBER_LAGGED and friends: reconnect and resume after the last event.
      this.socket.close(4000, 'resubscribe');
    }
  }
}
