// Paths in the address bar without a routing library: the platform's web server answers every app path
// with index.html, and these helpers keep React in step with history.
import { useEffect, useState, type MouseEvent } from "react";

export function usePath(): string {
  const [path, setPath] = useState(location.pathname + location.search);
  useEffect(() => {
    const update = () => setPath(location.pathname + location.search);
    addEventListener("popstate", update);
    addEventListener("app:navigate", update);
    return () => {
      removeEventListener("popstate", update);
      removeEventListener("app:navigate", update);
    };
  }, []);
  return path;
}

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  dispatchEvent(new Event("app:navigate"));
  scrollTo(0, 0);
}

/** onClick for <a href>: in-app navigation, while the link stays a link (new tab, copy address, keyboard). */
export function follow(event: MouseEvent<HTMLAnchorElement>): void {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(event.currentTarget.getAttribute("href")!);
}
