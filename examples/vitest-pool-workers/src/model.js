// The model the Worker uses (a module of its own: a Worker entry module may export only handlers).
export const MODEL = "@cf/meta/llama-3.1-8b-instruct";
