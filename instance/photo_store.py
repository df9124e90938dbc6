"""Where ID photos live: the local WebDAV file server, or Cloudinary when configured.

Both keep photos private: names are random (not guessable), nothing lists them, and a client
reads one only through an expiring signed link or the admin-authenticated photo route.
"""

import base64
import hashlib
import io
import os
import secrets
import time
from urllib.parse import urlencode

import requests
import urllib3
from flask import Flask, current_app

from common.metrics import PHOTO_UPLOAD_BYTES, PHOTO_UPLOAD_SECONDS, track_dependency


class PhotoStoreUnavailable(Exception):
    """The store could not be reached or refused the operation."""


def new_key(extension: str) -> str:
    # 128 random bits; the two-character folder keeps directories small at millions of photos
    token = secrets.token_hex(16)
    return f"{token[:2]}/{token}.{extension}"


def _refused(status: int) -> bool:
    """The store is failing or does not take our token: unavailable, whatever was asked."""
    return status >= 500 or status in (401, 403)


class WebDavStore:
    """The native/compose file server: an nginx with WebDAV PUT/DELETE on its own port.

    Writes carry a shared token; reads go through the public nginx, which checks the
    `secure_link` signature that `signed_url` makes (md5 of expiry, URI and secret).
    """

    backend = "webdav"

    def __init__(self, base_url: str, token: str, link_secret: str, link_ttl: int):
        self.base_url = base_url.rstrip("/")
        self.link_secret = link_secret
        self.link_ttl = link_ttl
        self.session = requests.Session()
        # an internal address: no proxy or .netrc lookups from the environment on every call
        self.session.trust_env = False
        self.session.headers["X-Photo-Store-Token"] = token
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        # Writes (a PUT per registration) go straight to a pool of kept-alive urllib3 connections:
        # requests' own work per call (preparing the request, cookies, merging settings) was a
        # fifth of a replica's CPU at saturation, more than the HTTP exchange itself. Same
        # retries as requests' default (none once the request may have been sent).
        self._writes = urllib3.connection_from_url(
            self.base_url,
            maxsize=16,
            block=False,
            retries=urllib3.Retry(0, read=False),
            # the store is local: a hung one must free the thread well before nginx gives up on
            # the registration (6 s), so it answers 503 instead of holding a worker for 15 s
            timeout=urllib3.Timeout(connect=2, read=5),
        )
        self._write_path = urllib3.util.parse_url(self.base_url).path or ""
        self._token = token

    def _call(self, operation: str, method: str, key: str, **kwargs) -> requests.Response:
        try:
            with track_dependency("photo_store", operation):
                response = self.session.request(method, f"{self.base_url}/{key}", timeout=(2, 15), **kwargs)
                if _refused(response.status_code):
                    response.close()
                    raise PhotoStoreUnavailable(f"{method} {key}: HTTP {response.status_code}")
                return response
        except requests.RequestException as error:
            raise PhotoStoreUnavailable(f"{method} {key}: {error}") from error

    def _write(
        self, operation: str, method: str, key: str, body: bytes | None = None, content_type: str | None = None
    ) -> int:
        headers = {"X-Photo-Store-Token": self._token}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            with track_dependency("photo_store", operation):
                status = self._writes.urlopen(method, f"{self._write_path}/{key}", body=body, headers=headers).status
                if _refused(status):
                    raise PhotoStoreUnavailable(f"{method} {key}: HTTP {status}")
                return status
        except urllib3.exceptions.HTTPError as error:
            raise PhotoStoreUnavailable(f"{method} {key}: {error}") from error

    def put(self, key: str, data: bytes, content_type: str) -> None:
        status = self._write("put", "PUT", key, data, content_type)
        if status not in (200, 201, 204):
            raise PhotoStoreUnavailable(f"PUT {key}: HTTP {status}")

    def delete(self, key: str) -> None:
        status = self._write("delete", "DELETE", key)
        if status not in (200, 204, 404):
            raise PhotoStoreUnavailable(f"DELETE {key}: HTTP {status}")

    def open(self, key: str) -> tuple[requests.Response, str] | None:
        """The photo as a streamed response (the caller closes it) and its content type."""
        response = self._call("get", "GET", key, stream=True)
        if response.status_code == 404:
            response.close()
            return None
        return response, response.headers.get("Content-Type", "application/octet-stream")

    def signed_url(self, key: str, public_base: str, expires: int | None = None) -> str:
        """A link valid until `expires` (epoch seconds), by default the link TTL from now."""
        expires = expires or int(time.time()) + self.link_ttl
        uri = f"/photos/{key}"
        # MD5 because nginx secure_link verifies MD5; the secret and the expiry bound what it protects
        digest = hashlib.md5(f"{expires}{uri} {self.link_secret}".encode()).digest()  # noqa: S324
        signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return f"{public_base.rstrip('/')}{uri}?{urlencode({'md5': signature, 'expires': expires})}"

    def ping(self) -> None:
        try:
            with track_dependency("photo_store", "health"):
                response = requests.get(f"{self.base_url}/health", timeout=2)
        except requests.RequestException as error:
            raise PhotoStoreUnavailable(str(error)) from error
        if response.status_code != 200:
            raise PhotoStoreUnavailable(f"health: HTTP {response.status_code}")


class CloudinaryStore:
    """Cloudinary with `authenticated` delivery: originals are reachable only by signed,
    expiring download links (the Admin API's private download URL)."""

    backend = "cloudinary"

    def __init__(self, cloudinary_url: str, link_ttl: int):
        import cloudinary

        # the SDK's documented configuration is the CLOUDINARY_URL variable, read on reset
        os.environ["CLOUDINARY_URL"] = cloudinary_url
        cloudinary.reset_config()
        self.link_ttl = link_ttl

    @staticmethod
    def _public_id(key: str) -> str:
        return key.rsplit(".", 1)[0]

    def put(self, key: str, data: bytes, content_type: str) -> None:
        import cloudinary.exceptions
        import cloudinary.uploader

        try:
            with track_dependency("photo_store", "put"):
                cloudinary.uploader.upload(
                    io.BytesIO(data),
                    public_id=self._public_id(key),
                    type="authenticated",
                    resource_type="image",
                    overwrite=False,
                    timeout=15,
                )
        except (cloudinary.exceptions.Error, OSError) as error:
            raise PhotoStoreUnavailable(f"upload {key}: {error}") from error

    def delete(self, key: str) -> None:
        import cloudinary.exceptions
        import cloudinary.uploader

        try:
            with track_dependency("photo_store", "delete"):
                # a delete cleans up after a failed registration: the client waits for it
                cloudinary.uploader.destroy(self._public_id(key), type="authenticated", invalidate=True, timeout=5)
        except (cloudinary.exceptions.Error, OSError) as error:
            raise PhotoStoreUnavailable(f"destroy {key}: {error}") from error

    def signed_url(self, key: str, public_base: str = "", expires: int | None = None) -> str:
        import cloudinary.utils

        public_id, _, extension = key.rpartition(".")
        return cloudinary.utils.private_download_url(
            public_id,
            extension,
            type="authenticated",
            resource_type="image",
            expires_at=expires or int(time.time()) + self.link_ttl,
        )

    def open(self, key: str) -> tuple[requests.Response, str] | None:
        """The photo as a streamed response (the caller closes it) and its content type."""
        try:
            with track_dependency("photo_store", "get"):
                response = requests.get(self.signed_url(key), stream=True, timeout=(2, 15))
        except requests.RequestException as error:
            raise PhotoStoreUnavailable(str(error)) from error
        if response.status_code != 200:
            response.close()
            if response.status_code == 404:
                return None
            raise PhotoStoreUnavailable(f"download {key}: HTTP {response.status_code}")
        return response, response.headers.get("Content-Type", "image/jpeg")

    def ping(self) -> None:
        # Cloudinary's health is not ours to probe on every readiness check (rate limits);
        # a failed upload answers 503 to that client instead.
        return None


def get_photo_store() -> WebDavStore | CloudinaryStore:
    return current_app.extensions["photo_store"]


def init_app(app: Flask) -> None:
    ttl = app.config["PHOTO_LINK_TTL_SECONDS"]
    if app.config["CLOUDINARY_URL"]:
        store = CloudinaryStore(app.config["CLOUDINARY_URL"], ttl)
    else:
        if not app.config["PHOTO_LINK_SECRET"] or not app.config["PHOTO_STORE_TOKEN"]:
            raise RuntimeError("PHOTO_LINK_SECRET and PHOTO_STORE_TOKEN must be set for the local photo store")
        store = WebDavStore(
            app.config["PHOTO_STORE_URL"], app.config["PHOTO_STORE_TOKEN"], app.config["PHOTO_LINK_SECRET"], ttl
        )
    app.extensions["photo_store"] = store


def observe_upload(store, seconds: float, size: int) -> None:
    PHOTO_UPLOAD_SECONDS.labels(store.backend).observe(seconds)
    PHOTO_UPLOAD_BYTES.observe(size)
