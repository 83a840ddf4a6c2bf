// The webhook and sidecar arrive with issue 6.
export {};
