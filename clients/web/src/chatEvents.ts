// Live chat events over gRPC-Web server streaming (ChatService.StreamEvents), kept open while a chat screen
// is shown: reopened after a drop, with the positions the screen has, so messages missed meanwhile come first.
import { useEffect, useRef } from "react";
import type { ChatEvent } from "@petplatform/proto/petplatform/chat/v1/chat_pb";
import type { Api } from "./api";

// After a drop, wait this long before reopening, doubling up to the cap: a down edge is not hammered.
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;

/** Calls `onEvent` for each event of the caller's rooms. `positions()` gives room -> last sequence held. */
export function useChatEvents(api: Api, onEvent: (event: ChatEvent) => void,
                              positions: () => Record<string, bigint> = () => ({})): void {
  // The latest callbacks, without reopening the stream each time the screen renders.
  const handler = useRef(onEvent);
  const where = useRef(positions);
  // Room -> the deletion number the last CaughtUp named: a reopened stream is sent only later deletions.
  const deletions = useRef<Record<string, bigint>>({});
  handler.current = onEvent;
  where.current = positions;

  useEffect(() => {
    const stop = new AbortController();
    void (async () => {
      let delay = FIRST_RETRY_MS;
      while (!stop.signal.aborted) {
        try {
          // No deadline (timeoutMs 0): the stream stays open as long as the screen does.
          const lastSequences = where.current();
          const lastDeleteSequences = Object.fromEntries(
            Object.entries(deletions.current).filter(([room]) => room in lastSequences));
          const stream = api.chat.streamEvents({ lastSequences, lastDeleteSequences },
                                               { signal: stop.signal, timeoutMs: 0 });
          for await (const response of stream) {
            delay = FIRST_RETRY_MS;
            const kind = response.event?.kind;
            if (kind?.case === "caughtUp") Object.assign(deletions.current, kind.value.lastDeleteSequences);
            if (response.event) handler.current(response.event);
          }
        } catch {
          // dropped (network, edge restart, a refreshed token): reopen below
        }
        if (stop.signal.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    })();
    return () => stop.abort();
  }, [api]);
}
