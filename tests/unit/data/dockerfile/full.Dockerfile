# syntax=docker/dockerfile:1
# escape=\

ARG BASE=busybox
# a comment before the first stage
FROM --platform=$BUILDPLATFORM ${BASE} AS build
    run  echo indented \
  # a comment inside the continuation

     continued
RUN ["sh", "-c", "echo exec form"]
RUN [ "not", json
COPY --from=build --chown=1:1 --chmod=644 a b /dest/
ADD --checksum=sha256:00 https://example.com/x /x
RUN <<EOT bash
  set -e
	echo tabs kept
EOT
COPY <<-'EOF' <<B /files/
	stripped $X
	EOF
b $Y
B
ENV A=1 B="two words" \
    C=3
LABEL multi="a \
b"
HEALTHCHECK --interval=5s CMD ["true"]
ONBUILD RUN echo later
CMD echo "#not a comment"
