#!/usr/bin/env python3
"""A man in the middle of a TLS market, for the secure-transport test.

  tls_proxy.py mitm LISTEN_HOST LISTEN_PORT UP_HOST UP_PORT CERT KEY
      terminates TLS with its own certificate and relays to the upstream over TLS;
  tls_proxy.py strip LISTEN_HOST LISTEN_PORT UP_HOST UP_PORT
      serves plain HTTP and relays to the upstream over TLS (a downgrade).
"""
import select
import socket
import ssl
import sys
import threading


def relay(c, u):
    """Both directions on one thread: an SSL socket must not be read and written from two
    threads at once."""
    socks = [c, u]
    try:
        while True:
            ready = [s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    return
            for s in ready:
                d = s.recv(65536)
                if not d:
                    return
                (u if s is c else c).sendall(d)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def main():
    mode, lh, lp, uh, up = sys.argv[1:6]
    sctx = None
    if mode == "mitm":
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(sys.argv[6], sys.argv[7])
    elif mode != "strip":
        sys.exit("mode: mitm or strip")
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lh, int(lp)))
    srv.listen(16)

    def handle(c):
        try:
            if sctx is not None:
                c = sctx.wrap_socket(c, server_side=True)
            u = cctx.wrap_socket(socket.create_connection((uh, int(up)), timeout=10))
        except (OSError, ssl.SSLError) as e:
            print("proxy: " + str(e), flush=True)
            c.close()
            return
        relay(c, u)

    print("proxy listening", flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


main()
