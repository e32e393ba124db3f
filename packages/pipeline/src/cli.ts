#!/usr/bin/env node
import { PNG_TINY_SD_DIR } from '@png/diffusion-backbone/png-tiny-sd';
import { main } from './command_line';

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, embeddedModel: PNG_TINY_SD_DIR });
