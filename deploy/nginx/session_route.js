// Sticky routing for sam2-matting replicas (nginx njs, 0.7+).
//
// A session lives in the memory of the replica that started it, and its id names that replica:
// with SAM2_MATTING_REPLICA_ID=r1 the ids look like "r1-<uuid4>". The id travels in the JSON
// body (the stock SAM 2 frontend sends no custom header), so nginx must read the body before
// it picks an upstream. `route` is a js_content handler: nginx has read the whole body when it
// runs. It stores the replica name in the js_var $sam2_replica (empty: no session id, any
// replica will do) and redirects to the named location @sam2_replica, whose proxy_pass maps the
// name to an upstream. A js_var keeps its value across the redirect; the body is sent on as read.
//
// Where the session id is looked for, first match wins:
//   1. the X-Session-Id header (our own clients may send it),
//   1b. the path /sessions/<id>/... (GET /sessions/<id>/composite/<frame>, the page's preview),
//   2. POST /propagate_in_video: {"session_id": "..."},
//   3. GraphQL: a "sessionId" (or "session_id") key anywhere in "variables",
//      then `sessionId: "..."` or `sessionId: $name` in the query text.
// Multipart bodies (video uploads) are never parsed: any replica stores them.
//
// njs can only read a body that nginx kept in memory (client_body_buffer_size). A larger JSON
// body without X-Session-Id is refused with 413 rather than sent to a replica at random, where
// it would get NOT_FOUND half of the time.

var SESSION_ID = /^(.+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
var IN_QUERY = /\bsession_?[iI]d\s*:\s*(?:"((?:[^"\\]|\\.)*)"|\$([_A-Za-z][_0-9A-Za-z]*))/;
var IN_PATH = /^\/sessions\/([^\/]+)\//;
var MAX_DEPTH = 8;

function replicaOf(sessionId) {
    if (typeof sessionId !== 'string') {
        return '';
    }
    var m = SESSION_ID.exec(sessionId);
    return m ? m[1] : '';
}

function findKey(value, depth) {
    if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) {
        return undefined;
    }
    var keys = Object.keys(value);
    var i;
    for (i = 0; i < keys.length; i++) {
        if ((keys[i] === 'sessionId' || keys[i] === 'session_id')
                && typeof value[keys[i]] === 'string') {
            return value[keys[i]];
        }
    }
    for (i = 0; i < keys.length; i++) {
        var found = findKey(value[keys[i]], depth + 1);
        if (found !== undefined) {
            return found;
        }
    }
    return undefined;
}

function sessionIdOf(body) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return undefined;
    }
    if (typeof body.session_id === 'string') {
        return body.session_id;
    }
    var variables = body.variables;
    var found = findKey(variables, 0);
    if (found !== undefined || typeof body.query !== 'string') {
        return found;
    }
    var m = IN_QUERY.exec(body.query);
    if (!m) {
        return undefined;
    }
    if (m[1] !== undefined) {
        return m[1];
    }
    return variables && typeof variables === 'object' ? variables[m[2]] : undefined;
}

var TOO_LARGE = JSON.stringify({
    error: {
        code: 'LIMIT_EXCEEDED',
        message: 'request body larger than the proxy reads to find its session id '
            + '(client_body_buffer_size); send the id in an X-Session-Id header',
    },
});

function route(r) {
    var replica = replicaOf(r.headersIn['X-Session-Id']);
    var inPath = IN_PATH.exec(r.uri);
    if (!replica && inPath) {
        replica = replicaOf(inPath[1]);
    }
    var type = (r.headersIn['Content-Type'] || '').toLowerCase();
    if (!replica && r.method === 'POST' && type.indexOf('multipart/') !== 0) {
        var text;
        try {
            text = r.requestText;
        } catch (e) {
            // "request body is in a file": nginx wrote it to a temporary file, already unlinked.
            r.headersOut['Content-Type'] = 'application/json';
            r.return(413, TOO_LARGE);
            return;
        }
        try {
            replica = replicaOf(sessionIdOf(JSON.parse(text || '')));
        } catch (e) {
            // Not JSON: let a replica answer the error.
        }
    }
    r.variables.sam2_replica = replica;
    r.internalRedirect('@sam2_replica');
}

export default { route, replicaOf, sessionIdOf };
