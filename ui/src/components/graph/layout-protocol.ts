/** Messages between the page and layout.worker.ts. */
export interface LayoutRequest {
  seq: number;
  ids: string[];
  edges: [string, string][];
  width: number;
  height: number;
}

/** An edge's route from ELK: its index in the request and the points of its polyline, flattened [x0, y0, x1, y1, …]. */
export type Route = [number, number[]];

export type LayoutReply =
  | { seq: number; positions: [string, number, number][]; routes: Route[]; error?: undefined }
  | { seq: number; error: string; positions?: undefined };
