"""A tiny OS-less guest for console tests: a boot sector that talks on COM1.

It prints MESSAGE on the first serial port (0x3f8) every ~100 ms (BIOS int 15h AH=86h
waits), echoes every byte it receives there as <byte>, and writes every key typed on its
keyboard (BIOS int 16h: the VNC console's keystrokes) there as [key]. Assembled from this source
(GNU as, `as --32`, `ld -m elf_i386 -Ttext=0x7c00 --oformat binary`); the bytes are below,
so the tests need no assembler:

    cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00; sti
    main:   mov si,msg; call puts; mov bx,20
    wait:   mov ah,0x86; xor cx,cx; mov dx,5000; int 0x15        ; 5 ms
    poll:   mov dx,0x3fd; in al,dx; test al,1; jz nodata         ; LSR: data ready?
            mov dx,0x3f8; in al,dx; mov ah,al
            mov al,'<'; call putc; mov al,ah; call putc; mov al,'>'; call putc; jmp poll
    nodata: mov ah,1; int 0x16; jz nokey                         ; a key waiting?
            xor ah,ah; int 0x16; mov ah,al                       ; take it: al = ASCII
            mov al,'['; call putc; mov al,ah; call putc; mov al,']'; call putc; jmp nodata
    nokey:  dec bx; jnz wait; jmp main
    putc:   push dx; push ax; mov dx,0x3fd
    1:      in al,dx; test al,0x20; jz 1b                        ; LSR: THR empty?
            pop ax; mov dx,0x3f8; out dx,al; pop dx; ret
    puts:   lodsb; test al,al; jz 2f; call putc; jmp puts
    2:      ret
    msg:    .asciz "CLOUDPANEL SERIAL OK\\r\\n"
            .org 510; .word 0xaa55
"""

from __future__ import annotations

from pathlib import Path

MESSAGE = b"CLOUDPANEL SERIAL OK\r\n"
_CODE = bytes.fromhex(
    "fa31c08ed88ed0bc007cfbbe7a7ce85e00bb1400b48631c9ba8813cd15bafd03"
    "eca8017417baf803ec88c4b03ce82e0088e0e82900b03ee82400ebe1b401cd16"
    "741730e4cd1688c4b05be8110088e0e80c00b05de80700ebe34b75b8ebad5250"
    "bafd03eca82074fb58baf803ee5ac3ac84c07405e8e7ffebf6c3"
)


def boot_sector() -> bytes:
    sector = _CODE + MESSAGE + b"\0"
    return sector.ljust(510, b"\0") + b"\x55\xaa"


def write_disk(path: Path, size: int = 1024 * 1024) -> Path:
    """A raw disk image of `size` bytes that boots the sector above."""
    path.write_bytes(boot_sector().ljust(size, b"\0"))
    return path
