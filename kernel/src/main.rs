#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};

entry_point!(kmain);

fn kmain(_boot: &'static mut BootInfo) -> ! {
    let mut port = unsafe { uart_16550::SerialPort::new(0x3f8) };
    port.init();
    use core::fmt::Write;
    let _ = writeln!(port, "hello fsdax");
    unsafe { x86_64::instructions::port::Port::<u32>::new(0xf4).write(0x10) };
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }
